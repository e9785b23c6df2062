"""imfuse: arbitrary neural style transfer with a full MLOps lifecycle."""

import os as _os

__version__ = "0.1.0"

# TensorFlow turns its oneDNN kernels on by default only where the CPU has AVX-512 VNNI/BF16 or
# AMX; on an AVX2-only CPU it runs Eigen's instead, which took the reduced transformer 871 ms at
# 1024 px against oneDNN's 161 ms (2-core AMD EPYC without AVX-512, bench/inference and README).
# It is read when TensorFlow is imported, so it is set here, before any imfuse module imports
# it; a TF_ENABLE_ONEDNN_OPTS already set (0 or 1) is left as it is.
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
