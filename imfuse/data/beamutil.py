"""Import Apache Beam without its import-time noise.

Some Beam modules call `logging.warning(...)` at import time when optional GCP client
libraries are missing; that call also installs a root stderr handler, so every later
Beam log line would reach the user. Importing with a temporary root handler swallows
those messages and leaves the root logger as it was.
"""

from __future__ import annotations

import logging
import sys


def import_beam():
    """Import and return `apache_beam` (with its filesystems), quietly, once."""
    if "apache_beam.io.filesystems" in sys.modules:
        import apache_beam

        return apache_beam
    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)
    try:
        import apache_beam
        import apache_beam.io.filesystems  # noqa: F401 - triggers the noisy GCP imports
    finally:
        root.removeHandler(guard)
    return apache_beam
