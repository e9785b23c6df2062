#!/usr/bin/env bash
# The test suite on a fresh machine: set up, then run pytest (slow tests excluded;
# `scripts/test.sh -m slow` runs them). Real test images are read from ../shared/data.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
exec .venv/bin/python -m pytest "$@"
