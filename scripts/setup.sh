#!/usr/bin/env bash
# Create ./.venv (Python 3.11) and install imfuse with its pinned dependencies.
# Idempotent: a second run with the same pyproject.toml and extras does nothing. Usage: scripts/setup.sh [EXTRAS]
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
python_bin="${PYTHON:-}"
if [ -z "$python_bin" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python_bin="$candidate"; break; fi
  done
fi
if ! "$python_bin" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
  echo "imfuse needs Python 3.11 (found: $("$python_bin" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
# The install is editable, so only pyproject.toml (pins, extras, entry points) can make it stale:
# a stamp of it skips pip's ~7 s re-check (and its build-backend warnings) on every later run.
stamp=".venv/.imfuse-installed"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras"
# Still checked each time (0.2 s): every pinned requirement is installed at its pin.
installed_ok() {
  .venv/bin/python - "$extras" <<'PY' 2>/dev/null
import sys
from importlib.metadata import PackageNotFoundError, requires, version
from packaging.requirements import Requirement

extras = set(sys.argv[1].split(","))
for spec in requires("imfuse") or []:
    req = Requirement(spec)
    if req.marker and not any(req.marker.evaluate({"extra": e}) for e in extras | {""}):
        continue
    try:
        if not req.specifier.contains(version(req.name), prereleases=True):
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
}
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && installed_ok; then
  exit 0
fi
# A full disk makes pip fail half-way through TensorFlow's 572 MB wheel with a misleading
# "Connection interrupted while downloading" (the write to its temp folder fails inside the
# HTTP read), so say so first: a new venv takes 3.6 GB, pip's downloads and unpacking ~1.5 GB
# more; updating an existing one needs about the downloads' share.
if [ -x .venv/bin/python ]; then default_need=1.5; else default_need=5; fi
need_gb="${IMFUSE_SETUP_MIN_FREE_GB:-$default_need}"
for dir in . "${TMPDIR:-/tmp}"; do
  free_gb="$(df -Pk "$dir" | awk 'NR == 2 { printf "%.1f", $4 / 1048576 }')"
  if awk -v free="$free_gb" -v need="$need_gb" 'BEGIN { exit !(free < need) }'; then
    echo "imfuse set-up needs about ${need_gb} GB free; $(cd "$dir" && pwd) has ${free_gb} GB. Free some space (or set IMFUSE_SETUP_MIN_FREE_GB)" >&2
    exit 2
  fi
done
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $("$python_bin" --version)" >&2
  "$python_bin" -m venv .venv
  .venv/bin/python -m pip install --quiet --upgrade pip
fi
echo "installing imfuse[$extras] into .venv (pinned; first run downloads ~1.5 GB)" >&2
rm -f "$stamp"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[$extras]"
echo "$want" > "$stamp"
