#!/usr/bin/env bash
# The test suite on a fresh machine: set up, then run pytest (slow tests excluded;
# `scripts/test.sh -m slow` runs them). Real test images are read from ../shared/data.
# Two pytest-xdist workers (IMFUSE_TEST_WORKERS; 0 runs in this process), each test module
# kept on one worker so its module fixtures are built once, the slowest modules handed out
# first (tests/conftest.py's SLOWEST_MODULES) so that both workers finish together.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
exec .venv/bin/python -m pytest -n "${IMFUSE_TEST_WORKERS:-2}" --dist loadscope --no-loadscope-reorder "$@"
