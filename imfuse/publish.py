"""Publish a model where serving reads it: BASE/<name>/<integer version>/ on a local or
mounted folder, or under s3://bucket/prefix (MinIO in the cluster).

The one implementation for `imfuse export` and the pipeline's export step
(`publish_registered` for a registry version, `publish_model` for a model). A registered
SavedModel is published as is, so serving runs exactly what the registry holds; otherwise
the .keras model is exported. On S3, `saved_model.pb` is uploaded last, so a poller that
sees it sees a complete version; a version claim keeps concurrent exporters apart.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from imfuse.errors import ConfigError, ModelError

SAVED_MODEL_PB = "saved_model.pb"


def split_s3(uri: str) -> tuple[str, str]:
    """'s3://bucket/a/b' -> ('bucket', 'a/b/'); prefix '' for the bucket root."""
    if not uri.startswith("s3://"):
        raise ConfigError(f"not an s3:// URI: {uri!r}")
    bucket, _, prefix = uri[len("s3://"):].partition("/")
    if not bucket:
        raise ConfigError(f"serving base path {uri!r} names no bucket (use s3://BUCKET[/PREFIX])")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


def s3_client():
    """boto3 S3 client for AWS or an S3-compatible store (AWS_ENDPOINT_URL / MLFLOW_S3_ENDPOINT_URL)."""
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
    kwargs = {"Bucket": bucket, "Prefix": model_prefix, "Delimiter": "/"}
    while True:
        page = client.list_objects_v2(**kwargs)
        for entry in page.get("CommonPrefixes", []):
            number = version_number(entry["Prefix"][len(model_prefix):].strip("/"))
            if number is not None:
                versions.append(number)
        if not page.get("IsTruncated"):
            return sorted(versions)
        kwargs["ContinuationToken"] = page["NextContinuationToken"]


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
    from imfuse.export import s3_version_claim

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
        _, local = publish_model(scratch, name, model=model, saved_model=saved_model, version=version)
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


def check_base_path(base: str) -> None:
    """Refuse a base path that cannot be published to, before any model is loaded."""
    if not base:
        raise ConfigError("no serving base path given (a folder or s3://BUCKET[/PREFIX])")
    if "://" in base and not base.startswith("s3://"):
        raise ConfigError(f"serving base path {base!r}: use a local/mounted folder or s3://BUCKET[/PREFIX]")
    if base.startswith("s3://"):
        split_s3(base)


def publish_model(base: str, name: str, *, model=None, saved_model: Path | None = None,
                  version: int | None = None, client=None) -> tuple[int, str]:
    """Publish the registered `saved_model` folder as is, else export `model`; (version, path)."""
    from imfuse.export import export_saved_model, publish_saved_model

    check_base_path(base)
    if base.startswith("s3://"):
        if version is not None:
            raise ConfigError("an explicit version is not supported on s3:// (the next free one is claimed)")
        return export_to_s3(model, base, name, client, saved_model=saved_model)
    if saved_model is not None:
        target = publish_saved_model(saved_model, base, name=name, version=version)
    else:
        target = export_saved_model(model, base, name=name, version=version)
    return int(target.name), str(target.resolve())


def publish_registered(base: str, name: str, registered_model: str, which: str | int, *, mlflow_uri: str | None = None,
                       precision: str = "float32", version: int | None = None, client=None) -> tuple[int, str]:
    """Publish registered version/alias `which`: its packaged SavedModel as is when that computes
    in `precision` (serving runs exactly what the registry holds), else its .keras model exported
    in `precision`; then tag the registry version with the serving version and path."""
    from imfuse.export import packaged_keras, packaged_saved_model, saved_model_precision
    from imfuse.networks import load_model
    from imfuse.tracking.registry import download_model, get_version

    check_base_path(base)  # before any download or model load
    registry_version = get_version(registered_model, which, mlflow_uri).version
    downloaded = download_model(registered_model, str(registry_version), mlflow_uri)
    saved_model = packaged_saved_model(downloaded) if downloaded.is_dir() else None
    registered_precision = saved_model_precision(saved_model) if saved_model is not None else None
    if saved_model is not None and registered_precision != precision:
        print(f"the registered SavedModel computes in {registered_precision}; "
              f"exporting the registered .keras model in {precision} instead", file=sys.stderr)
        saved_model = None
    model = None if saved_model is not None else load_model(packaged_keras(downloaded), precision=precision)
    served, path = publish_model(base, name, model=model, saved_model=saved_model, version=version, client=client)
    tag_registry_version(mlflow_uri, registered_model, registry_version, served, path)
    return served, path
