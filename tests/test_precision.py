"""The precision predict runs a float32 SavedModel in: auto picks bfloat16
(oneDNN's rewrite) only where the CPU computes it natively, and the
process-wide option is put back afterwards."""

import pytest
import tensorflow as tf

from protein_location.core import device_precision


def test_auto_is_bfloat16_only_on_cpus_with_native_bfloat16(monkeypatch):
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)
    choice, reason = device_precision.inference_precision("auto", cpu_flags=["avx512_bf16"], vendor="AuthenticAMD")
    assert choice == "bfloat16" and reason.startswith(
        "oneDNN's bfloat16 rewrite of the float32 graph: this AMD CPU computes bfloat16 natively (avx512_bf16)"
    )
    # 0.71x of float32 measured on an Intel Xeon with AVX512_BF16 and no AMX.
    intel_avx512_bf16 = device_precision.inference_precision("auto", cpu_flags=["avx512_bf16"], vendor="GenuineIntel")
    assert intel_avx512_bf16[0] == "float32"
    assert device_precision.inference_precision("auto", cpu_flags=["amx_bf16"], vendor="GenuineIntel")[0] == "bfloat16"
    assert device_precision.inference_precision("auto", cpu_flags=[], vendor="AuthenticAMD") == (
        "float32",
        "this CPU has no native bfloat16 arithmetic",
    )
    assert device_precision.inference_precision("auto", num_gpus=1, cpu_flags=["amx_bf16"])[0] == "float32"
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    assert device_precision.inference_precision("auto", cpu_flags=["amx_bf16"], vendor="GenuineIntel")[0] == "float32"
    assert device_precision.inference_precision("bfloat16", cpu_flags=[]) == ("bfloat16", "--precision")
    with pytest.raises(ValueError, match="^`precision` must be one of auto, float32, bfloat16, got 'half'$"):
        device_precision.inference_precision("half")


def test_the_scope_sets_the_rewrite_and_puts_the_option_back():
    def rewrite():
        return tf.config.optimizer.get_experimental_options().get("auto_mixed_precision_onednn_bfloat16", False)

    assert not rewrite()
    with device_precision.inference_precision_scope("bfloat16"):
        assert rewrite()
        with device_precision.inference_precision_scope("float32"):
            assert not rewrite()
        assert rewrite()
    assert not rewrite()
