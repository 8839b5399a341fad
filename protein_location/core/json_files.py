"""JSON records through `file_system` (local, gs://, ram://): dataset.json,
conversion state, run.json, thresholds.json, report.json, explain.json."""

import json

from protein_location.core import file_system
from protein_location.core.output_files import write_atomic


def write_json_atomic(path, payload):
    """Writes JSON whole or not at all (`output_files.write_atomic`)."""
    write_atomic(path, json.dumps(payload, indent=2))


def read_json(path):
    """The parsed JSON file at `path` (json.JSONDecodeError if it is not JSON)."""
    with file_system.open_file(path, "r") as f:
        return json.load(f)
