#!/bin/sh
# Copy the SavedModel versions under s3://$MODELS_BUCKET/$MODEL_NAME/<int>/ into
# /models/$MODEL_NAME/<int>/, where TF Serving polls for them.
#
# Why not `mc mirror` straight into the served dir: TF Serving would start loading a
# version while its variables are still being copied. The bucket is mirrored into a
# private dir, and each complete version (saved_model.pb and variables index present)
# is copied to a staging dir and renamed into place, which is atomic. Uploaders write
# saved_model.pb last. Versions deleted from the bucket are deleted here, so TF Serving
# unloads them.
#
#   sync-models.sh --once   init container: wait for the first complete version, exit
#   sync-models.sh          sidecar: sync every $SYNC_INTERVAL_SECONDS (default 30)
# Needs: mc with an alias `store` (MC_HOST_store), a POSIX shell and coreutils.
set -eu
: "${MODEL_NAME:?MODEL_NAME is not set}"
: "${MODELS_BUCKET:?MODELS_BUCKET is not set}"
ROOT="${MODELS_ROOT:-/models}"
SRC="store/${MODELS_BUCKET}/${MODEL_NAME}"
MIRROR="${ROOT}/.mirror/${MODEL_NAME}"
STAGING="${ROOT}/.staging"
DST="${ROOT}/${MODEL_NAME}"
INTERVAL="${SYNC_INTERVAL_SECONDS:-30}"
mkdir -p "$MIRROR" "$STAGING" "$DST"

log() { echo "model-sync: $*"; }

is_version() {
  case "$1" in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac
}

# One pass; succeeds when at least one complete version is in place.
sync_once() {
  if ! mc mirror --quiet --overwrite --remove "$SRC" "$MIRROR" >/dev/null; then
    log "cannot read s3://${MODELS_BUCKET}/${MODEL_NAME} (store unreachable or empty)"
    return 1
  fi
  ready=0
  for dir in "$MIRROR"/*; do
    [ -d "$dir" ] || continue
    v=$(basename "$dir")
    is_version "$v" || continue
    [ -f "$dir/saved_model.pb" ] && [ -f "$dir/variables/variables.index" ] || continue
    ready=$((ready + 1))
    [ -d "$DST/$v" ] && continue
    rm -rf "${STAGING:?}/$v"
    if cp -R "$dir" "$STAGING/$v" && mv "$STAGING/$v" "$DST/$v"; then
      log "version $v of ${MODEL_NAME} is in place"
    else
      log "could not copy version $v; will retry"
      return 1
    fi
  done
  for dir in "$DST"/*; do
    [ -d "$dir" ] || continue
    v=$(basename "$dir")
    if is_version "$v" && [ ! -d "$MIRROR/$v" ]; then
      rm -rf "${DST:?}/$v"
      log "version $v was deleted from the bucket; removed"
    fi
  done
  [ "$ready" -gt 0 ]
}

if [ "${1:-}" = "--once" ]; then
  until sync_once; do
    log "waiting for a SavedModel at s3://${MODELS_BUCKET}/${MODEL_NAME}/<version>/"
    sleep "$INTERVAL"
  done
  exit 0
fi

while true; do
  sync_once || true
  sleep "$INTERVAL"
done
