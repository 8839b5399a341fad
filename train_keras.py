"""Train an SE-ResNet on converted HPA TFRecords, tune thresholds, export a SavedModel.

    python train_keras.py --data tfrecords/demo --model-dir runs/demo --epochs 10 --export export/demo
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", required=True, help="dataset folder from `python -m data_prep convert`")
    parser.add_argument("--model-dir", required=True, help="run folder: checkpoints, logs, report")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs")
    parser.add_argument("--batch-size", type=int, default=32, help="global batch size")
    parser.add_argument("--size", type=int, default=None, help="input side in pixels; default: the dataset's")
    parser.add_argument("--arch", default="seresnet18", choices=["seresnet18", "seresnet34", "seresnet50"],
                        help="SE-ResNet preset")
    parser.add_argument("--width", type=float, default=1.0, help="multiplier on the filters of every stage")
    parser.add_argument("--lr", type=float, default=1.6e-2,
                        help="peak learning rate (AdamW) at a global batch of 256; the run uses "
                             "LR x batch-size / 256 (linear scaling)")
    parser.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW decoupled weight decay")
    parser.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warmup before cosine decay")
    parser.add_argument("--dropout", type=float, default=0.0, help="dropout before the head")
    parser.add_argument("--loss", choices=["bce", "focal"], default="bce",
                        help="binary cross-entropy, or focal loss with alpha class balancing for rare classes")
    parser.add_argument("--bias-init", action=argparse.BooleanOptionalAction, default=True,
                        help="start the head's bias at each class's training log-odds (off: zeros)")
    parser.add_argument("--oversample", type=float, nargs="?", const=0.1, default=None, metavar="THRESHOLD",
                        help="repeat-factor sampling: an image is repeated sqrt(THRESHOLD / f) times per epoch, "
                             "f the training frequency of its rarest label, when f < THRESHOLD "
                             "(flag alone: 0.1); epochs keep their length")
    parser.add_argument("--focal-gamma", type=float, default=2.0, help="focal loss focusing parameter")
    parser.add_argument("--focal-alpha", type=float, default=0.25, help="focal loss weight of positive labels")
    parser.add_argument("--label-smoothing", type=float, default=0.0, help="label smoothing of the loss")
    parser.add_argument("--precision", choices=["float32", "mixed_float16", "mixed_bfloat16"], default=None,
                        help="Keras dtype policy; the sigmoid head stays float32 (default: mixed_bfloat16 "
                             "on a TPU, and on a machine without GPUs whose CPU has AVX512_BF16 or AMX; "
                             "else float32)")
    parser.add_argument("--jit-compile", action="store_true", help="compile the train step with XLA")
    parser.add_argument("--augment-flips", action=argparse.BooleanOptionalAction, default=True,
                        help="random one of the 8 flips/rotations")
    parser.add_argument("--augment-crop", type=float, default=1.0, metavar="MIN_AREA",
                        help="random crop of at least this share of the image, resized back (1: off; e.g. 0.7)")
    parser.add_argument("--augment-jitter", type=float, default=0.0,
                        help="per-channel brightness/contrast jitter amplitude (0: off)")
    parser.add_argument("--tta", type=int, choices=[1, 8], default=1,
                        help="views the exported serving_default averages per image: 1, or the 8 "
                             "flips/rotations (8x the compute); thresholds are tuned on val for both, and each "
                             "signature labels with those tuned for what it computes")
    parser.add_argument("--shuffle-buffer", type=int, default=2048, help="examples held for shuffling")
    parser.add_argument("--seed", type=int, default=0, help="seed of initialization, shuffling and augmentation")
    parser.add_argument("--fold", type=int, default=None,
                        help="for a dataset converted with --folds: the fold held out as val")
    parser.add_argument("--export", default=None, help="write the SavedModel here after training")
    parser.add_argument("--tflite", action="store_true",
                        help="with --export: also model.tflite (float32) in the SavedModel's version folder")
    parser.add_argument("--tflite-quantize", action="store_true",
                        help="with --export: also model_int8.tflite (dynamic-range int8 weights)")
    parser.add_argument("--onnx", action="store_true", help="with --export: also model.onnx (needs tf2onnx)")
    parser.add_argument("--strategy", choices=["auto", "default", "mirrored", "multiworker", "tpu"], default="auto",
                        help="tf.distribute strategy; auto: tpu with --tpu, multiworker when TF_CONFIG names "
                             "more than one worker, mirrored when GPUs are visible (or --replicas), else default")
    parser.add_argument("--replicas", type=int, default=None,
                        help="mirrored: use this many GPUs, or split a machine without GPUs into this many "
                             "logical CPU devices (default: all GPUs, or one CPU)")
    parser.add_argument("--tpu", default=None,
                        help="with --strategy tpu: the Cloud TPU's name, or local on a TPU VM")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from protein_location.augment import AugmentConfig
    from protein_location.export import ExportError, export_formats_of
    from protein_location.manifest import ManifestError
    from protein_location.train import TrainConfig, TrainError, train

    config = TrainConfig(
        data=args.data, model_dir=args.model_dir, epochs=args.epochs, batch_size=args.batch_size,
        image_size=args.size, arch=args.arch, width=args.width, learning_rate=args.lr,
        weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs, dropout=args.dropout,
        loss=args.loss, bias_init=args.bias_init, oversample=args.oversample, tta=args.tta,
        focal_gamma=args.focal_gamma, focal_alpha=args.focal_alpha,
        label_smoothing=args.label_smoothing, precision=args.precision, jit_compile=args.jit_compile,
        augmentation=AugmentConfig(args.augment_flips, args.augment_crop, args.augment_jitter),
        shuffle_buffer=args.shuffle_buffer, seed=args.seed, fold=args.fold, export_dir=args.export,
        strategy=args.strategy, replicas=args.replicas, tpu=args.tpu,
    )
    try:
        # Checked before training: a missing converter must not cost a run.
        config.export_formats = export_formats_of(args.tflite, args.tflite_quantize, args.onnx, args.export)
        train(config)
    except (ManifestError, TrainError, ExportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
