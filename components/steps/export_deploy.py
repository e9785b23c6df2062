"""Pipeline step 5 (blessed models only): publish the SavedModel where serving reads it.

The serving base path is a local/mounted folder (kfp.local, a PVC) or `s3://bucket/prefix`
(the cluster's MinIO bucket `s3://models`). Either way the result is
BASE/<model name>/<integer version>/ with the serving signatures; TF Serving (or
`imfuse serve`) picks up the new, highest version by polling, and in the cluster the
model-sync sidecar copies it into the serving pod. On S3, `saved_model.pb` is uploaded
last, so a poller that sees it sees a complete version. The registry version is tagged
with the serving version and path, so either can be traced to the other.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


SAVED_MODEL_PB = "saved_model.pb"


def split_s3(uri: str) -> tuple[str, str]:
    """'s3://bucket/a/b' -> ('bucket', 'a/b/'); prefix '' for the bucket root."""
    from imfuse.errors import ConfigError

    if not uri.startswith("s3://"):
        raise ConfigError(f"not an s3:// URI: {uri!r}")
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not bucket:
        raise ConfigError(f"serving base path {uri!r} names no bucket (use s3://BUCKET[/PREFIX])")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def s3_client():
    """boto3 S3 client for AWS or an S3-compatible store (AWS_ENDPOINT_URL / MLFLOW_S3_ENDPOINT_URL)."""
    from imfuse.errors import ConfigError

    try:
        import boto3
    except ImportError:
        raise ConfigError("an s3:// serving base path needs boto3 (pip install boto3)") from None
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None
    return boto3.client("s3", endpoint_url=endpoint)


def s3_versions(client, bucket: str, model_prefix: str) -> list[int]:
    """Integer version 'folders' under s3://bucket/<model_prefix> (which ends in '/')."""
    from imfuse.versions import version_number

    versions: list[int] = []
    token = None
    while True:
        kwargs = {"Bucket": bucket, "Prefix": model_prefix, "Delimiter": "/"}
        if token:
            kwargs["ContinuationToken"] = token
        page = client.list_objects_v2(**kwargs)
        for entry in page.get("CommonPrefixes", []):
            number = version_number(entry["Prefix"][len(model_prefix):].strip("/"))
            if number is not None:
                versions.append(number)
        if not page.get("IsTruncated"):
            return sorted(versions)
        token = page.get("NextContinuationToken")


def upload_version(client, local_dir: str | Path, bucket: str, key_prefix: str) -> list[str]:
    """Upload a version folder under key_prefix ('.../<version>/'), saved_model.pb last; returns keys."""
    local_dir = Path(local_dir)
    files = sorted(p for p in local_dir.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.relative_to(local_dir).as_posix() == SAVED_MODEL_PB)  # stable: .pb moves last
    keys = []
    for path in files:
        key = key_prefix + path.relative_to(local_dir).as_posix()
        client.upload_file(str(path), bucket, key)
        keys.append(key)
    return keys


def export_to_s3(model, base_uri: str, name: str, client=None, saved_model: Path | None = None) -> tuple[int, str]:
    """Export `model` (or take the registered `saved_model` folder) into a scratch folder,
    then publish it as the next version under s3://.../<name>/."""
    from imfuse.errors import ConfigError, ModelError
    from imfuse.export import export_saved_model, publish_saved_model, s3_version_claim

    bucket, prefix = split_s3(base_uri)
    client = client or s3_client()
    model_prefix = f"{prefix}{name}/"
    try:
        existing = s3_versions(client, bucket, model_prefix)
    except Exception as exc:  # noqa: BLE001 - botocore errors: no bucket, bad credentials, endpoint down
        raise ConfigError(f"cannot list s3://{bucket}/{model_prefix}: {exc}") from None
    first = (existing[-1] + 1) if existing else 1
    # The claim keeps a concurrent exporter off this number; a failed upload is removed.
    with s3_version_claim(client, bucket, model_prefix, first) as version, \
            tempfile.TemporaryDirectory(prefix="imfuse-export-") as scratch:
        if saved_model is not None:
            local = publish_saved_model(saved_model, scratch, name=name, version=version)
        else:
            local = export_saved_model(model, scratch, name=name, version=version)
        try:
            upload_version(client, local, bucket, f"{model_prefix}{version}/")
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"uploading the SavedModel to s3://{bucket}/{model_prefix}{version}/ failed: {exc}") from None
    return version, f"s3://{bucket}/{model_prefix}{version}"


def tag_registry_version(mlflow_uri: str, registered_model: str, version: int, serving_version: int, path: str) -> None:
    """Record where the registered version is served (tags on the model version)."""
    from imfuse.tracking import TAG_SERVING_PATH, TAG_SERVING_VERSION
    from imfuse.tracking.client import get_client, resolve_tracking_uri, tracking_errors

    uri = resolve_tracking_uri(mlflow_uri or None)
    client = get_client(uri)
    with tracking_errors(uri, f"tagging {registered_model} version {version}"):
        client.set_model_version_tag(registered_model, str(version), TAG_SERVING_VERSION, str(serving_version))
        client.set_model_version_tag(registered_model, str(version), TAG_SERVING_PATH, path)


def export_stage(
    model_dir: str,
    serving_base_path: str,
    model_name: str,
    registered_model: str = "",
    registered_version: int = 0,
    mlflow_uri: str = "",
    client=None,
) -> dict:
    """Publish the next serving version; returns version and path.

    With a registry version, the SavedModel registered with it is published as is, so
    serving runs exactly what the registry holds; otherwise RUN_DIR/model.keras is exported.
    """
    from imfuse.errors import ConfigError

    base = (serving_base_path or os.environ.get("IMFUSE_SERVING_BASE_PATH", "")).strip()
    if not base:
        raise ConfigError("no serving base path: set the pipeline parameter serving_base_path or IMFUSE_SERVING_BASE_PATH")
    name = (model_name or os.environ.get("IMFUSE_MODEL_NAME", "") or "imfuse").strip()
    if "://" in base and not base.startswith("s3://"):
        raise ConfigError(f"serving base path {base!r}: use a local/mounted folder or s3://BUCKET[/PREFIX]")
    if base.startswith("s3://"):
        split_s3(base)  # a bad URI fails before the model is loaded
    from imfuse.export import export_saved_model, packaged_saved_model, publish_saved_model
    from imfuse.networks import load_model

    saved_model, model = None, None
    if registered_model and registered_version:
        from imfuse.tracking.registry import download_model

        downloaded = download_model(registered_model, str(registered_version), mlflow_uri or None)
        saved_model = packaged_saved_model(downloaded) if downloaded.is_dir() else None
    if saved_model is None:
        model = load_model(Path(model_dir) / "model.keras")
    if base.startswith("s3://"):
        version, path = export_to_s3(model, base, name, client, saved_model=saved_model)
    elif saved_model is not None:
        target = publish_saved_model(saved_model, base, name=name)
        version, path = int(target.name), str(target.resolve())
    else:
        target = export_saved_model(model, base, name=name)
        version, path = int(target.name), str(target.resolve())
    if registered_model and registered_version:
        tag_registry_version(mlflow_uri, registered_model, registered_version, version, path)
    return {"serving_version": version, "path": path, "model_name": name}
