"""Scoring a model's probabilities against labels.

| module | job |
| --- | --- |
| `thresholds` | per-class threshold tuning, macro F1 |
| `report` | report.json (the paper's table) and report.png |
| `thresholds_file` | thresholds.json: `ThresholdsFile`, read and written, earlier versions read |
| `report_file` | report.json: `ReportFile`, read and written |
"""
