"""`tf`, imported on first use, for the modules a conversion worker needs
(`core.records`, `core.manifest`, `core.output_files`, `core.json_files`,
`data_prep.tfrecord_lib`, `data_prep.shard_writer`): their TensorFlow parts
serve the converter and the readers, and a worker that writes local shards
of PNG or TIFF stains never touches them (`core.file_system`)."""

import importlib


class _TensorFlowOnFirstUse:
    def __getattr__(self, name):
        return getattr(importlib.import_module("tensorflow"), name)


tf = _TensorFlowOnFirstUse()
