"""What a training run is asked to do: `TrainConfig`, and the command-line
flags generated from its fields, so the two cannot drift; `resolve`, the one
function that decides every default the flags leave open, before any work.

Each field that is a flag carries its flag name and help in its metadata
(`flag(...)`); `add_flags` adds them to an argparse parser with the field's
default, and `config_from_args` builds the config back. `AugmentConfig`'s
fields become `--augment-*` flags the same way.
"""

import dataclasses

from protein_location import models
from protein_location.core import cli_flags, device_precision
from protein_location.core.cli_flags import flag
from protein_location.core.errors import TrainError
from protein_location.data import augment
from protein_location.training import distribute


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    data: str = flag("--data", "dataset folder from `python -m data_prep convert`", required=True)
    model_dir: str = flag("--model-dir", "run folder: checkpoints, logs, report", required=True)
    epochs: int = flag("--epochs", "training epochs", 10)
    batch_size: int = flag("--batch-size", "global batch size", 32)
    image_size: int | None = flag("--size", "input side in pixels; default: the dataset's", None, type=int)
    arch: str = flag(
        "--arch",
        "an SE-ResNet/SE-ResNeXt preset (from scratch) or a keras.applications backbone "
        "(from scratch or pretrained, --weights)",
        "seresnet18",
        choices=list(models.ARCHITECTURES),
    )
    weights: str | None = flag(
        "--weights",
        "the backbone's start: imagenet (downloaded by Keras, or from its cache ~/.keras/models), none "
        "(random), or PATH, a Keras weights file of the three-channel keras.applications backbone without its top "
        "(what keras.applications downloads); default: imagenet for keras.applications backbones, none for the "
        "presets",
        None,
        metavar="imagenet|none|PATH",
    )
    freeze_epochs: int | None = flag(
        "--freeze-epochs",
        "head-only warm-up: epochs with the backbone frozen (its BatchNorm in inference mode) "
        "before all of it trains (default: 1 with pretrained --weights and --epochs over 1, else 0)",
        None,
        type=int,
    )
    backbone_lr_scale: float | None = flag(
        "--backbone-lr-scale",
        "the backbone learns at this times the head's rate (default: 0.1 with pretrained --weights, else 1)",
        None,
        type=float,
    )
    width: float = flag("--width", "multiplier on the filters of every stage (SE-ResNet presets)", 1.0)
    # The peak rate at the reference global batch of 256; a run uses
    # learning_rate * batch_size / 256 (distribute.scaled_learning_rate).
    learning_rate: float = flag(
        "--lr",
        "peak learning rate (AdamW) at a global batch of 256; the run uses LR x batch-size / 256 (linear scaling)",
        1.6e-2,
    )
    weight_decay: float = flag("--weight-decay", "AdamW decoupled weight decay", 1e-4)
    warmup_epochs: float = flag("--warmup-epochs", "linear warmup before cosine decay", 1.0)
    ema_momentum: float | None = flag(
        "--ema",
        "keep an exponential moving average of the weights (AdamW use_ema) with this momentum per step: "
        "val metrics, the best checkpoint and the export use the average (flag alone: 0.99; default: off)",
        None,
        type=float,
        nargs="?",
        const=0.99,
        metavar="MOMENTUM",
    )
    dropout: float = flag("--dropout", "dropout before the head", 0.0)
    loss: str = flag(
        "--loss",
        "binary cross-entropy, or focal loss with alpha class balancing for rare classes",
        "bce",
        choices=["bce", "focal"],
    )
    bias_init: bool = flag("--bias-init", "start the head's bias at each class's training log-odds (off: zeros)", True)
    oversample: float | None = flag(
        "--oversample",
        "repeat-factor sampling: an image is repeated sqrt(THRESHOLD / f) times per epoch, f the "
        "training frequency of its rarest label, when f < THRESHOLD (flag alone: 0.1); epochs keep their length",
        None,
        type=float,
        nargs="?",
        const=0.1,
        metavar="THRESHOLD",
    )
    tta: int = flag(
        "--tta",
        "views the exported serving_default averages per image: 1, or the 8 flips/rotations "
        "(8x the compute); thresholds are tuned on val for both, and each signature labels with those "
        "tuned for what it computes",
        1,
        choices=[1, 8],
    )
    focal_gamma: float = flag("--focal-gamma", "focal loss focusing parameter", 2.0)
    focal_alpha: float = flag("--focal-alpha", "focal loss weight of positive labels", 0.25)
    label_smoothing: float = flag("--label-smoothing", "label smoothing of the loss", 0.0)
    precision: str | None = flag(
        "--precision",
        "Keras dtype policy; the sigmoid head stays float32 (default: mixed_bfloat16 on a TPU, and on "
        "a machine without GPUs where bfloat16 pays: AMX, or an AMD CPU with AVX512_BF16; else float32)",
        None,
        choices=["float32", "mixed_float16", "mixed_bfloat16"],
    )
    jit_compile: bool = flag("--jit-compile", "compile the train step with XLA", False)
    augmentation: augment.AugmentConfig = dataclasses.field(default_factory=augment.AugmentConfig)
    shuffle_buffer: int = flag("--shuffle-buffer", "examples held for shuffling", 2048)
    seed: int = flag("--seed", "seed of initialization, shuffling and augmentation", 0)
    fold: int | None = flag(
        "--fold",
        "for a dataset converted with --folds: the fold held out as val (with --cv: the one fold this machine trains)",
        None,
        type=int,
    )
    cv: bool = flag(
        "--cv",
        "k-fold cross-validation on a dataset converted with --folds K: trains the K fold models "
        "in MODEL_DIR/fold-<i>, tunes the thresholds on their out-of-fold predictions, and --export "
        "writes one SavedModel that averages the K models",
        False,
    )
    export_dir: str | None = flag("--export", "write the SavedModel here after training", None)
    # Set from --tflite/--tflite-quantize/--onnx (export.export_formats_of): "tflite", "tflite_int8", "onnx".
    export_formats: tuple = ()
    strategy: str = flag(
        "--strategy",
        "tf.distribute strategy; auto: tpu with --tpu, multiworker when TF_CONFIG "
        "names more than one worker, mirrored when GPUs are visible (or --replicas), else default",
        "auto",
        choices=["auto", "default", "mirrored", "multiworker", "tpu"],
    )
    replicas: int | None = flag(
        "--replicas",
        "mirrored: use this many GPUs, or split a machine without GPUs into "
        "this many logical CPU devices (default: all GPUs, or one CPU)",
        None,
        type=int,
    )
    tpu: str | None = flag("--tpu", "with --strategy tpu: the Cloud TPU's name, or local on a TPU VM", None)
    overwrite: bool = flag(
        "--overwrite",
        "start a new run in a --model-dir that holds another one (its run files "
        "are deleted); without it the same command resumes or finishes its own run, and "
        "another refuses",
        False,
    )

    @property
    def peak_learning_rate(self):
        """The peak rate a run trains at: --lr scaled linearly from the reference global batch to --batch-size."""
        return distribute.scaled_learning_rate(self.learning_rate, self.batch_size)


# The fields a request may leave None for `resolve` to decide.
RESOLVED_FIELDS = ("weights", "freeze_epochs", "backbone_lr_scale", "precision", "image_size")


def resolve(config, strategy_kind, stored_image_size, num_gpus=0, cpu_flags=None, vendor=None):
    """The run `config` asks for, every default decided, once, before any work:
    the one place a run's settings change (nothing after it hands back another
    config). A TrainError in one line for a request that cannot run.

    - `weights`: a keras.applications backbone starts from ImageNet, a preset
      from scratch; `freeze_epochs`: a pretrained backbone warms its head up
      for an epoch; `backbone_lr_scale`: then learns at 0.1 of the head's rate
      (from scratch: with the head, at its rate).
    - `precision`: `device_precision.default_precision` of the strategy kind
      (`distribute.choose_strategy`), the GPUs and this CPU (`cpu_flags`,
      `vendor`: /proc/cpuinfo's when None).
    - `image_size`: the dataset's stored side (`stored_image_size`).

    Returns (the resolved TrainConfig, why its precision, in words).
    """
    weights = config.weights
    try:
        models.check_arch_request(config.arch, config.width, None if weights in (None, "none") else weights)
    except ValueError as error:
        raise TrainError(str(error)) from None
    if weights is None:  # the default is pretrained only for a family that takes weights: nothing more to check
        weights = "imagenet" if models.backbone_class(config.arch).takes_pretrained_weights else "none"
    pretrained = weights != "none"
    freeze = config.freeze_epochs
    if freeze is None:
        freeze = 1 if pretrained and config.epochs > 1 else 0
    if freeze and not pretrained:
        raise TrainError(
            f"`freeze_epochs` {freeze}: a head-only warm-up needs a pretrained backbone (`weights` "
            "imagenet or PATH with a keras.applications `arch`)"
        )
    if not 0 <= freeze <= config.epochs:
        raise TrainError(f"`freeze_epochs` {freeze} must be between 0 and `epochs` {config.epochs}")
    scale = config.backbone_lr_scale
    if scale is None:
        scale = 0.1 if pretrained else 1.0
    if scale < 0:
        raise TrainError(f"`backbone_lr_scale` {scale:g} must be at least 0")
    if config.ema_momentum is not None and not 0 < config.ema_momentum < 1:
        raise TrainError(
            f"`ema_momentum` {config.ema_momentum:g} must be between 0 and 1 (a momentum per step, 0.99 a "
            "window of about 100 steps)"
        )
    precision, precision_reason = config.precision, "--precision"
    if precision is None:
        precision, precision_reason = device_precision.default_precision(strategy_kind, num_gpus, cpu_flags, vendor)
    resolved = dataclasses.replace(
        config,
        weights=weights,
        freeze_epochs=freeze,
        backbone_lr_scale=scale,
        precision=precision,
        image_size=config.image_size or stored_image_size,
    )
    return resolved, precision_reason


# Flags that say how a run computes, not what it is: a killed run may resume with other values of these.
RUNTIME_FIELDS = (
    "model_dir",
    "export_dir",
    "export_formats",
    "strategy",
    "replicas",
    "tpu",
    "jit_compile",
    "overwrite",
)


# AugmentConfig's fields as flags (augment.py keeps its own dataclass, free of argparse).
AUGMENT_FLAGS = {
    "flips": ("--augment-flips", "random one of the 8 flips/rotations", {}),
    "crop_min_area": (
        "--augment-crop",
        "random crop of at least this share of the image, resized back (1: off; e.g. 0.7)",
        {"metavar": "MIN_AREA"},
    ),
    "jitter": ("--augment-jitter", "per-channel brightness/contrast jitter amplitude (0: off)", {}),
}


# TrainConfig's flag fields by what they configure: `--help` lists them so.
FLAG_GROUPS = {
    "data": ("data", "image_size", "fold", "cv", "shuffle_buffer", "oversample"),  # and --augment-*
    "model": ("arch", "width", "weights", "dropout", "bias_init"),
    "optimizer": (
        "epochs",
        "batch_size",
        "learning_rate",
        "weight_decay",
        "warmup_epochs",
        "ema_momentum",
        "freeze_epochs",
        "backbone_lr_scale",
    ),
    "loss": ("loss", "focal_gamma", "focal_alpha", "label_smoothing"),
    "runtime": ("model_dir", "strategy", "replicas", "tpu", "precision", "jit_compile", "seed", "overwrite"),
    "export": ("export_dir", "tta"),  # and the formats' flags (cli_flags)
}


def add_flags(parser):
    """Adds a flag for every flag field of TrainConfig (and AugmentConfig),
    with its default, in FLAG_GROUPS' argument groups, and the export formats'
    flags (`cli_flags.add_export_format_flags`: `export_formats`)."""
    groups = {name: parser.add_argument_group(name) for name in FLAG_GROUPS}
    for group, names in FLAG_GROUPS.items():
        cli_flags.add_dataclass_flags(groups[group], TrainConfig, names)
    for field in dataclasses.fields(augment.AugmentConfig):
        name, help, kwargs = AUGMENT_FLAGS[field.name]
        cli_flags.add_field_flag(groups["data"], f"augment_{field.name}", name, help, field.default, kwargs)
    cli_flags.add_export_format_flags(groups["export"], condition="with --export: ")
    return parser


def flag_names():
    """{TrainConfig field: its flag} (`export_dir`: --export), for
    `errors.naming_flags` where no parser is at hand."""
    return cli_flags.flag_names(TrainConfig)


def config_from_args(args, **overrides):
    """The TrainConfig of parsed flags (`add_flags`); `overrides` set non-flag fields."""
    values = cli_flags.values_of(args, TrainConfig)
    augmentation = augment.AugmentConfig(
        **{field.name: getattr(args, f"augment_{field.name}") for field in dataclasses.fields(augment.AugmentConfig)}
    )
    return TrainConfig(**values, augmentation=augmentation, **overrides)


def run_settings(config):
    """{flag: value} of what defines a run (every flag but RUNTIME_FIELDS),
    as the command gave them: a resume must give the same (run.json)."""
    settings = {
        field.metadata["flag"]: getattr(config, field.name)
        for field in dataclasses.fields(TrainConfig)
        if "flag" in field.metadata and field.name not in RUNTIME_FIELDS
    }
    for field in dataclasses.fields(augment.AugmentConfig):
        settings[AUGMENT_FLAGS[field.name][0]] = getattr(config.augmentation, field.name)
    if not config.cv:
        # A single run (a fold of --cv too) records what it did before --cv existed: its folder resumes across
        # the upgrade, and a fold trained by hand with --fold i is the fold --cv would train.
        del settings["--cv"]
    if config.ema_momentum is None:
        del settings["--ema"]  # likewise: a run folder from before --ema resumes
    return settings
