"""What an export writes and costs: the SavedModel's `variables/` and
`saved_model.pb` sizes, the values its checkpoint stores against the
model's parameter count (each weight once, plus the metadata), the seconds
to export and to load it and call serving_default once, for one model with
random weights.

    python -m bench.export_size                                 # seresnet18 at 128 px (the default model)
    python -m bench.export_size --arch densenet121 --size 128 --out export_size.json
"""

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def folder_mb(path):
    return sum(f.stat().st_size for f in pathlib.Path(path).rglob("*") if f.is_file()) / 1e6


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="seresnet18")
    parser.add_argument("--width", type=float, default=1.0, help="SE-ResNet presets only")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--out", default=None, help="JSON record")
    args = parser.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    from protein_location import export, models
    from protein_location.core import labels as labels_lib

    model = models.build_classifier(
        args.arch, image_size=args.size, num_classes=labels_lib.NUM_CLASSES, width=args.width
    )
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        path = export.export_saved_model(model, np.full(labels_lib.NUM_CLASSES, 0.5), work, labels_lib.CLASS_NAMES)
        exported = time.perf_counter()
        loaded = tf.saved_model.load(path)
        loaded.signatures["serving_default"](image=tf.zeros([2, args.size, args.size, 4], tf.uint8))
        served = time.perf_counter()
        shapes = tf.train.load_checkpoint(f"{path}/variables/variables").get_variable_to_shape_map()
        record = {
            "arch": args.arch,
            "width": args.width,
            "size": args.size,
            "parameters": model.count_params(),
            "stored_values": sum(int(np.prod(shape)) for name, shape in shapes.items() if "OBJECT_GRAPH" not in name),
            "variables_mb": round(folder_mb(f"{path}/variables"), 2),
            "saved_model_pb_mb": round(os.path.getsize(f"{path}/saved_model.pb") / 1e6, 2),
            "export_s": round(exported - start, 2),
            "load_and_first_call_s": round(served - exported, 2),
        }
    print(json.dumps(record, indent=2))
    if args.out:
        pathlib.Path(args.out).write_text(json.dumps(record, indent=2))
    return record


if __name__ == "__main__":
    main()
