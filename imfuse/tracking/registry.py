"""Model registry: register, list, promote, compare and download versions.

Registered models `imfuse-full` / `imfuse-reduced`; alias `challenger` marks the newest
candidate, `champion` what serving should run (docs/CONTRACTS.md). A version's metrics
are its run's metrics, so names identical across runs line up in `compare`.
"""

from __future__ import annotations

import atexit
import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from imfuse.errors import TrackingError
from imfuse.tracking import (
    CHALLENGER,
    CHAMPION,
    EVAL_CONTENT_LOSS,
    EVAL_IDENTITY_STYLE_LOSS,
    EVAL_IMAGES_PER_SECOND,
    EVAL_STYLE_LOSS_SEEN,
    EVAL_STYLE_LOSS_UNSEEN,
    GATE_METRIC,
    MODEL_ARTIFACT,
    TAG_BLESSED,
    TAG_SERVING_VERSION,
    TRAIN_LOSS,
)
from imfuse.tracking.client import error_code, open_store, tracking_errors

DEFAULT_METRICS = (TRAIN_LOSS, EVAL_CONTENT_LOSS, EVAL_STYLE_LOSS_SEEN, EVAL_STYLE_LOSS_UNSEEN, GATE_METRIC,
                   EVAL_IDENTITY_STYLE_LOSS, EVAL_IMAGES_PER_SECOND)


@dataclass
class VersionInfo:
    """One registered version with what `list`/`compare` show about it."""

    name: str
    version: int
    aliases: list[str]
    run_id: str | None
    source: str
    created_ms: int
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    run_tags: dict[str, str] = field(default_factory=dict)


def _missing(exc: BaseException) -> bool:
    code = error_code(exc)
    return code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND") or "not found" in str(exc)


def register_run_model(
    tracking_uri: str | None,
    run_id: str,
    name: str,
    artifact_path: str = MODEL_ARTIFACT,
    tags: dict[str, str] | None = None,
    alias: str | None = CHALLENGER,
) -> int:
    """New version of `name` from `runs:/<run_id>/<artifact_path>`; alias set on it; returns the number."""
    uri, client = open_store(tracking_uri)
    with tracking_errors(uri, f"registering model '{name}'"):
        try:
            client.get_registered_model(name)
        except Exception as exc:  # noqa: BLE001
            if not _missing(exc):
                raise
            try:
                client.create_registered_model(name, description="imfuse arbitrary style transfer model")
            except Exception as exc2:  # noqa: BLE001 - created concurrently by another process
                if error_code(exc2) != "RESOURCE_ALREADY_EXISTS":
                    raise
        version = client.create_model_version(
            name,
            source=f"runs:/{run_id}/{artifact_path}",
            run_id=run_id,
            tags={k: v for k, v in (tags or {}).items() if v},
            await_creation_for=0,
        )
        if alias:
            client.set_registered_model_alias(name, alias, version.version)
    return int(version.version)


def _version_info(client, mv) -> VersionInfo:
    info = VersionInfo(
        name=mv.name,
        version=int(mv.version),
        aliases=sorted(mv.aliases or []),
        run_id=mv.run_id or None,
        source=mv.source,
        created_ms=int(mv.creation_timestamp or 0),
        tags=dict(mv.tags or {}),
    )
    if info.run_id:
        try:
            run = client.get_run(info.run_id)
        except Exception:  # noqa: BLE001 - run deleted: the version still lists, without metrics
            return info
        info.metrics = dict(run.data.metrics)
        info.run_tags = dict(run.data.tags)
    return info


def get_version(name: str, alias_or_version: str | int, tracking_uri: str | None = None) -> VersionInfo:
    """A version by number ("3") or alias ("champion"); TrackingError naming what is unknown."""
    uri, client = open_store(tracking_uri)
    ref = str(alias_or_version)
    with tracking_errors(uri, f"looking up {name}@{ref}"):
        _require_model(client, name)
        try:
            mv = client.get_model_version(name, ref) if ref.isdigit() else client.get_model_version_by_alias(name, ref)
        except Exception as exc:  # noqa: BLE001
            if _missing(exc):
                what = f"version {ref}" if ref.isdigit() else f"alias '{ref}'"
                raise TrackingError(f"registered model '{name}' has no {what} in {uri}") from None
            raise
        return _version_info(client, mv)


def _require_model(client, name: str):
    try:
        return client.get_registered_model(name)
    except Exception as exc:  # noqa: BLE001
        if _missing(exc):
            known = ", ".join(sorted(m.name for m in client.search_registered_models())) or "none"
            raise TrackingError(f"no registered model named '{name}' (registered: {known})") from None
        raise


def list_models(tracking_uri: str | None = None) -> list[str]:
    """Names of all registered models, sorted."""
    uri, client = open_store(tracking_uri)
    with tracking_errors(uri, "listing registered models"):
        return sorted(m.name for m in client.search_registered_models())


def list_versions(name: str, tracking_uri: str | None = None) -> list[VersionInfo]:
    """All versions of `name`, newest first, with aliases, run ids and run metrics."""
    uri, client = open_store(tracking_uri)
    with tracking_errors(uri, f"listing versions of '{name}'"):
        aliases = _aliases_by_version(_require_model(client, name))
        versions = client.search_model_versions(f"name='{name}'")
        infos = [_version_info(client, mv) for mv in versions]
    for info in infos:  # search results carry no aliases; the registered model does
        info.aliases = sorted(set(info.aliases) | set(aliases.get(info.version, [])))
    return sorted(infos, key=lambda v: v.version, reverse=True)


def serving_version_info(name: str, serving_version: int, tracking_uri: str | None = None) -> VersionInfo | None:
    """The registered version that was published to serving as `serving_version` (its tag)."""
    matches = (i for i in list_versions(name, tracking_uri) if i.tags.get(TAG_SERVING_VERSION) == str(serving_version))
    return next(matches, None)


def _aliases_by_version(model) -> dict[int, list[str]]:
    raw = model.aliases or {}
    pairs = raw.items() if isinstance(raw, dict) else ((a.alias, a.version) for a in raw)
    out: dict[int, list[str]] = {}
    for alias, version in pairs:
        out.setdefault(int(version), []).append(alias)
    return out


def is_blessed(info: VersionInfo) -> bool | None:
    """The evaluation verdict recorded on the version's run (None: never evaluated)."""
    value = info.run_tags.get(TAG_BLESSED)
    return None if value is None else value.lower() == "true"


def promote(
    name: str,
    version: str | int,
    tracking_uri: str | None = None,
    require_blessing: bool = False,
    alias: str = CHAMPION,
) -> VersionInfo:
    """Point `champion` at an existing version (optionally only if its evaluation blessed it)."""
    if not str(version).isdigit():
        raise TrackingError(f"version must be a number, got '{version}'")
    info = get_version(name, version, tracking_uri)
    blessed = is_blessed(info)
    if require_blessing and not blessed:
        why = ("has no evaluation (run `imfuse evaluate` first)" if blessed is None
               else "was not blessed by its evaluation")
        raise TrackingError(f"{name} version {info.version} {why}; refusing to promote")
    uri, client = open_store(tracking_uri)
    with tracking_errors(uri, f"setting alias '{alias}' on {name} version {info.version}"):
        client.set_registered_model_alias(name, alias, str(info.version))
    return get_version(name, info.version, uri)


def champion_metric(
    name: str, metric: str, tracking_uri: str | None = None, alias: str = CHAMPION
) -> tuple[VersionInfo | None, float | None]:
    """(champion version, its run's `metric`); (None, None) if the model or alias does not exist."""
    uri, client = open_store(tracking_uri)
    with tracking_errors(uri, f"reading the {alias} of '{name}'"):
        try:
            client.get_registered_model(name)
            mv = client.get_model_version_by_alias(name, alias)
        except Exception as exc:  # noqa: BLE001
            if _missing(exc):
                return None, None
            raise
        info = _version_info(client, mv)
    value = info.metrics.get(metric)
    return info, (None if value is None or not math.isfinite(value) else float(value))


def compare(
    names: Sequence[str], metrics: Sequence[str] = DEFAULT_METRICS, tracking_uri: str | None = None
) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per version of each model, one column per metric."""
    header = ["model", "version", "aliases", "run_id", *metrics]
    rows = []
    for name in names:
        for info in list_versions(name, tracking_uri):
            cells = [name, str(info.version), ",".join(info.aliases) or "-", (info.run_id or "-")[:12]]
            cells += [_fmt(info.metrics.get(m)) for m in metrics]
            rows.append(cells)
    return header, rows


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain aligned text table (what the CLI prints)."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def _scratch_dir(prefix: str) -> Path:
    """A temp folder removed when the process exits: a download is read while the process runs
    (a warm start, a baseline, the studio's compare), and left behind it would pile up in /tmp."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, True)
    return path


def download_model(
    name: str, alias_or_version: str, tracking_uri: str | None = None, dst: str | None = None
) -> Path:
    """Local copy of a registered version: the `.keras` file, or the SavedModel directory.

    Used by `imfuse export --from-registry NAME@ALIAS`; TrackingError if unknown.
    """
    uri, client = open_store(tracking_uri)
    info = get_version(name, alias_or_version, uri)
    target = Path(dst) if dst else _scratch_dir(f"{name}-v{info.version}-")
    target.mkdir(parents=True, exist_ok=True)
    with tracking_errors(uri, f"downloading {name} version {info.version}"):
        if info.source.startswith("runs:/"):
            run_id, _, artifact_path = info.source[len("runs:/"):].partition("/")
            local = client.download_artifacts(run_id, artifact_path or "", str(target))
        else:
            import mlflow.artifacts

            local = mlflow.artifacts.download_artifacts(
                artifact_uri=info.source, dst_path=str(target), tracking_uri=uri
            )
    local = Path(local)
    if local.is_dir():
        entries = [p for p in local.iterdir() if not p.name.startswith(".")]
        if len(entries) == 1 and entries[0].is_file() and entries[0].suffix == ".keras":
            return entries[0]
    return local
