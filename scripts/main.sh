#!/usr/bin/env bash
# The main job on a fresh machine: set up, then run the whole pipeline locally on
# generated demo data (prepare -> train -> evaluate -> register -> export).
# Extra arguments go to `imfuse pipeline run --local`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh dev
exec .venv/bin/imfuse pipeline run --local "$@"
