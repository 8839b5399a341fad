"""The core every stage stands on, importing nothing else of this project:
label sets, the TFRecord schema's parse side, dataset.json, the raw stain
files and their one decoder, and one error hierarchy."""
