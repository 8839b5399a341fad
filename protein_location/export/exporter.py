"""Writes an export: a new SavedModel version under an export base, with
TFLite and ONNX files beside it on request, published only when complete
(`versions`) and every file checked against the SavedModel (`formats`)."""

import posixpath

import numpy as np

from protein_location import models
from protein_location.core import cli_flags, folder_lock, output_files, stop_signals
from protein_location.core.errors import ExportError, OutputError
from protein_location.export import formats as formats_lib, saved_model
from protein_location.export.versions import (
    make_staging_dir,
    publish,
    remove_dir,
    remove_interrupted_exports,
    version_dirs,
)


def export_formats_of(tflite=False, tflite_quantize=False, onnx=False, export_dir="", out_flag="--export"):
    """The --tflite/--tflite-quantize/--onnx flags -> the formats tuple of
    `export_model`, checked (converter installed, an export folder given)."""
    formats = tuple(name for name, wanted in zip(formats_lib.FORMATS, (tflite, tflite_quantize, onnx)) if wanted)
    if formats and not export_dir:
        flags = [cli_flags.EXPORT_FORMAT_FLAGS[name][0] for name in formats]
        raise ExportError(f"{' '.join(flags)} needs {out_flag} DIR")
    formats_lib.check_available(formats)
    return formats


def export_model(model, thresholds, export_base, formats=(), log=print, *, class_names, tta_thresholds=None):
    """Writes a new SavedModel version under `export_base` (arguments as
    `export_saved_model`) and, for each of
    `formats` ("tflite", "tflite_int8", "onnx"), the same model in that format
    inside the version folder, each checked against the SavedModel.

    A mixed-precision model is exported as its float32 twin: the export
    computes in float32 on any device (docs/training.md, "3. Train").
    Everything is written and checked in a temporary folder that is renamed
    to the version number only at the end (the module docstring): a TF
    Serving instance polling the base never sees a partial or failed
    version. On any failure the temporary folder is removed.
    Returns the SavedModel folder written.
    """
    formats_lib.check_available(formats)
    model = models.float32_twin(model)
    _check_sizes(model, thresholds, class_names, tta_thresholds)
    with folder_lock.FolderLock(export_base, "export"):
        path, written = _write_version(model, thresholds, export_base, formats, log, class_names, tta_thresholds)
    views = "8 flips/rotations" if tta_thresholds is not None else "one view"
    log(f"export: SavedModel in {path} (serving_default: {views}, with thresholds tuned for it)")
    for entry in written:
        log(f"export: {formats_lib.describe(entry, path)}")
    return path


def _write_version(model, thresholds, export_base, formats, log, class_names, tta_thresholds):
    for stale in remove_interrupted_exports(export_base):
        log(f"export: removed {stale}, left by an export that was killed")
    intended = posixpath.join(export_base, str(max(version_dirs(export_base), default=0) + 1))
    staging = make_staging_dir(export_base, posixpath.basename(intended))
    try:
        stop_signals.raise_if_requested()
        saved_model.write_saved_model(model, thresholds, staging, class_names, tta_thresholds)
        checks = {}  # the SavedModel's outputs on the check images, computed once
        written = [
            formats_lib.write_format(name, model, thresholds, staging, checks, shown_path=intended) for name in formats
        ]
        stop_signals.raise_if_requested()  # a stop before the version is published publishes nothing
        path = publish(staging, export_base)
    except ExportError as error:
        remove_dir(staging)
        raise ExportError(f"{error}; no version written to {export_base}") from None
    except BaseException as error:
        remove_dir(staging)
        reason = output_files.disk_error_reason(error)
        if reason is not None:
            raise OutputError(
                f"{export_base}: cannot write the export: {reason}; no version written; {output_files.RETRY_HINT}"
            ) from None
        raise
    return path, written


def export_saved_model(model, thresholds, export_base, class_names, tta_thresholds=None):
    """Writes `model` with its per-class thresholds and class names (one per
    output) as a new version under `export_base`.

    `thresholds` are tuned on single-view probabilities; `tta_thresholds`, if
    given, on the mean over the 8 flips/rotations, and then serving_default
    averages the 8 views (else it computes one).

    The layout TF Serving reads: `export_base/1/`, then `2/`, ..., each
    appearing only when complete (`export_model`, without other formats).
    Returns the SavedModel folder written.
    """
    return export_model(
        model, thresholds, export_base, (), log=lambda _: None, class_names=class_names, tta_thresholds=tta_thresholds
    )


def _check_sizes(model, thresholds, class_names, tta_thresholds):
    width = int(model.output_shape[-1])
    if (
        len(class_names) != width
        or np.size(thresholds) != width
        or (tta_thresholds is not None and np.size(tta_thresholds) != width)
    ):
        raise ExportError(
            f"the model has {width} outputs but {len(class_names)} class names and {np.size(thresholds)} thresholds"
        )
