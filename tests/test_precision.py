"""Precision resolution: 'auto' never picks a bfloat16 path the CPU (or oneDNN's ISA cap) lacks."""

from __future__ import annotations

import pytest

from imfuse import precision
from imfuse.errors import ConfigError


@pytest.mark.parametrize("var", ["ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"])
def test_onednn_capped_below_bf16_resolves_auto_to_float32(monkeypatch, var):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv(var, "avx2")
    assert precision.onednn_isa_cap() == "AVX2" and precision.onednn_bf16_capped_off()
    assert not precision.cpu_has_fast_bf16()
    assert precision.resolve_precision("auto") == "float32"
    assert precision.resolve_precision("bfloat16") == "bfloat16"  # asked for explicitly: kept (e.g. an export)
    assert "oneDNN capped at AVX2" in precision.cpu_summary()


def test_bf16_cap_follows_the_cpu_flags(monkeypatch, tmp_path):
    fake = tmp_path / "cpuinfo"
    fake.write_text("model name\t: Test CPU\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda f, *a, **k: real_open(fake if f == "/proc/cpuinfo" else f, *a, **k))
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert precision.cpu_has_fast_bf16()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE")
    assert not precision.cpu_has_fast_bf16()
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert precision.cpu_has_fast_bf16()
    assert precision.cpu_summary().startswith("cpu: Test CPU,")
    fake.write_text("model name\t: Old CPU\nflags\t\t: fpu avx2\n")
    assert not precision.cpu_has_fast_bf16()


def test_unknown_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown precision 'fp8'"):
        precision.resolve_precision("fp8")
