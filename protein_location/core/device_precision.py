"""The precision of a run: the Keras dtype policy when --precision is not
given, from the device and this CPU's bfloat16 arithmetic; and the precision
`predict` runs a float32 SavedModel in."""

import contextlib
import os

# x86 CPU features for bfloat16 arithmetic, which oneDNN (TensorFlow's CPU
# kernels) uses for convolutions and matrix products.
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The feature flags of this machine's CPU (Linux; none elsewhere)."""
    try:
        with open(cpuinfo) as f:
            return next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []


def cpu_bfloat16_flags(cpuinfo="/proc/cpuinfo"):
    """The BFLOAT16_CPU_FLAGS this machine's CPU has."""
    flags = cpu_flags(cpuinfo)
    return [flag for flag in BFLOAT16_CPU_FLAGS if flag in flags]


def cpu_vendor(cpuinfo="/proc/cpuinfo"):
    """`GenuineIntel`, `AuthenticAMD`, ... (Linux; None elsewhere)."""
    try:
        with open(cpuinfo) as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("vendor_id")), None)
    except OSError:
        return None


def bfloat16_pays(flags, vendor):
    """(whether bfloat16 through oneDNN is faster than float32 on this CPU, why).

    The rule follows what was measured (docs/training.md, "3. Train", and
    docs/benchmarks.md): AMD EPYC with AVX512_BF16 trains and infers faster
    in bfloat16, an Intel Xeon with AVX512_BF16 and no AMX slower. AMX
    (amx_bf16) is Intel's bfloat16 matrix unit, the one oneDNN's bfloat16
    kernels are built for (not measured here). Anything else: float32.
    """
    if "amx_bf16" in flags:
        return True, "this CPU has AMX bfloat16 tiles (amx_bf16)"
    if "avx512_bf16" in flags and vendor == "AuthenticAMD":
        return True, "this AMD CPU computes bfloat16 natively (avx512_bf16), faster than float32"
    if "avx512_bf16" in flags:
        return False, f"avx512_bf16 without AMX on {vendor or 'this CPU'}: bfloat16 slower than float32"
    return False, "this CPU has no native bfloat16 arithmetic"


def default_precision(kind, num_gpus=0, cpu_flags=None, vendor=None):
    """The dtype policy when --precision is not given, and why.

    bfloat16 is the TPU's native type. A machine without GPUs trains in
    mixed_bfloat16 where bfloat16 pays on its CPU (`bfloat16_pays`): faster
    at no measured cost in macro F1 (docs/training.md, "3. Train", has the
    figures). Elsewhere float32: a CPU
    without those instructions emulates bfloat16 slowly, and on GPUs
    mixed_float16 is a choice for the user (--precision).

    `cpu_flags` and `vendor`: this machine's (/proc/cpuinfo) when None.

    Returns:
        (policy name, the reason in words).
    """
    if kind == "tpu":
        return "mixed_bfloat16", "the TPU's native type"
    if num_gpus:
        return "float32", "GPUs: --precision mixed_float16 to use their half-precision units"
    flags = cpu_bfloat16_flags() if cpu_flags is None else cpu_flags
    pays, reason = bfloat16_pays(flags, cpu_vendor() if vendor is None else vendor)
    if not pays:
        return "float32", reason
    if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0":
        return "float32", "TF_ENABLE_ONEDNN_OPTS=0 turns off oneDNN, whose kernels use the CPU's bfloat16"
    return "mixed_bfloat16", f"{reason}; --precision float32 to turn off"


# predict --precision: what a float32 SavedModel runs in. bfloat16 is oneDNN's
# bfloat16 graph rewrite (a TensorFlow run-time option: convolutions and
# matrix products in bfloat16, the SavedModel itself unchanged).
INFERENCE_PRECISIONS = ("auto", "float32", "bfloat16")
_ONEDNN_BFLOAT16 = "auto_mixed_precision_onednn_bfloat16"


def inference_precision(requested="auto", num_gpus=0, cpu_flags=None, vendor=None):
    """(float32 or bfloat16, the reason in words) for `predict`: auto is
    bfloat16 where training would pick mixed_bfloat16 on this CPU
    (`bfloat16_pays`, oneDNN on), else float32."""
    if requested not in INFERENCE_PRECISIONS:
        raise ValueError(f"`precision` must be one of {', '.join(INFERENCE_PRECISIONS)}, got {requested!r}")
    if requested != "auto":
        return requested, "--precision"
    policy, reason = default_precision("default", num_gpus, cpu_flags, vendor)
    if policy == "mixed_bfloat16":
        return "bfloat16", f"oneDNN's bfloat16 rewrite of the float32 graph: {reason}"
    return "float32", reason


@contextlib.contextmanager
def inference_precision_scope(precision):
    """Runs the functions first called inside it in `precision` (see
    INFERENCE_PRECISIONS); the process-wide option is restored on exit."""
    import tensorflow as tf

    before = tf.config.optimizer.get_experimental_options().get(_ONEDNN_BFLOAT16, False)
    tf.config.optimizer.set_experimental_options({_ONEDNN_BFLOAT16: precision == "bfloat16"})
    try:
        yield precision
    finally:
        tf.config.optimizer.set_experimental_options({_ONEDNN_BFLOAT16: before})
