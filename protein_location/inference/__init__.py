"""Using an export: batch prediction, submissions and their score, Grad-CAM pictures.

| module | job |
| --- | --- |
| `serving` | a client of our SavedModels: load, check the signature, read their variables |
| `predict` | batch inference from raw images or TFRecords |
| `beam_predict` | `predict --runner beam`: the same two functions as a Beam pipeline |
| `submission` | submission and probabilities CSVs, scoring |
| `explain` | Grad-CAM pictures of predicted locations |
"""
