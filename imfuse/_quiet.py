"""Import TensorFlow without its native start-up chatter on stderr.

TensorFlow 2.21 logs oneDNN/CUDA probing lines through absl before logging is
initialised, so TF_CPP_MIN_LOG_LEVEL does not silence them; they would bury the CLI's
one-line error messages. We point file descriptor 2 at /dev/null for the import and
the first device query (which triggers the CUDA probe) and then restore it.
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def native_stderr_silenced():
    """File descriptor 2 points at /dev/null inside (native libraries' own logging), unless IMFUSE_DEBUG."""
    if os.environ.get("IMFUSE_DEBUG"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tensorflow_quietly() -> None:
    if "tensorflow" in sys.modules or os.environ.get("IMFUSE_DEBUG"):
        return
    with native_stderr_silenced():
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")
