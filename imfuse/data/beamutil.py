"""Import Apache Beam without its import-time noise.

Some Beam modules call `logging.warning(...)` at import time when optional GCP client
libraries are missing; that call also installs a root stderr handler, so every later
Beam log line would reach the user. Importing with a temporary root handler swallows
those messages and leaves the root logger as it was.
"""

from __future__ import annotations

import logging
import sys


class _InMemoryWorkersFilter(logging.Filter):
    """Beam warns that the in_memory mode ignores direct_num_workers, but here it does
    not (bench/ingest.py: 12.4 s with 1 worker, 7.1 s with 2 on 400 files), so the
    warning would only mislead users of the default DirectRunner settings."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "direct_running_mode should be" not in record.getMessage()


def import_beam():
    """Import and return `apache_beam` (with its filesystems), quietly, once."""
    if "apache_beam.io.filesystems" in sys.modules:
        import apache_beam

        return apache_beam
    logging.getLogger("apache_beam.runners.portability.fn_api_runner.fn_runner").addFilter(_InMemoryWorkersFilter())
    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)
    try:
        import apache_beam
        import apache_beam.io.filesystems  # noqa: F401 - triggers the noisy GCP imports
    finally:
        root.removeHandler(guard)
    return apache_beam
