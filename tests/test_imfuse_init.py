"""imfuse/__init__: TensorFlow's oneDNN kernels are on unless the user said otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = "import os, imfuse; print(os.environ['TF_ENABLE_ONEDNN_OPTS'])"


def _run(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if env_value is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = env_value
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip()


def test_importing_imfuse_switches_onednn_on_and_a_users_choice_wins():
    assert _run(None) == "1"  # TensorFlow alone would leave it off on an AVX2-only CPU
    assert _run("0") == "0"
