"""Exports of a trained model, one module per job:

| module | what it does |
| --- | --- |
| `signatures` | the signature names and the fixed-size function other formats convert |
| `saved_model` | the SavedModel: five signatures, metadata variables |
| `exporter` | a new version under an export base, other formats beside it, published complete |
| `versions` | version folders as TF Serving reads them; staging and atomic publishing |
| `formats` | the TFLite and ONNX files, each checked against the SavedModel |
| `tflite_format`, `onnx_format` | the two converters and their runtimes |
| `run_folder` | a training run folder (model.keras, thresholds.json) to export again |
"""

from protein_location.core.errors import ExportError
from protein_location.export.exporter import export_formats_of, export_model, export_saved_model
from protein_location.export.run_folder import load_run
from protein_location.export.signatures import (
    CHANNELS_SIGNATURE,
    EXAMPLES_SIGNATURE,
    GRADCAM_SIGNATURE,
    SIGNATURE,
    SINGLE_VIEW_SIGNATURE,
    serving_signature,
)

__all__ = [
    "CHANNELS_SIGNATURE",
    "EXAMPLES_SIGNATURE",
    "ExportError",
    "GRADCAM_SIGNATURE",
    "SIGNATURE",
    "SINGLE_VIEW_SIGNATURE",
    "export_formats_of",
    "export_model",
    "export_saved_model",
    "load_run",
    "serving_signature",
]
