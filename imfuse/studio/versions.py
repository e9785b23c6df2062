"""What the compare view can put side by side, and what MLflow says about each.

A version reference is text the page sends back:
`serving:stable` / `serving:2` (a label or version of the serving target),
`registry:champion` / `registry:3` (an alias or version of the registered model),
`local` (the model this studio loaded) and `base` (the shipped base model).
Registry versions run on the serving target when their `imfuse.serving_version` tag
says which serving version they are, else they are downloaded and loaded here; serving
versions find their registry version (and so their run's metrics) through the same tag.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from imfuse.errors import ConfigError, ImfuseError
from imfuse.studio.backends import Backend, LocalBackend, ServingBackend
from imfuse.studio.config import StudioConfig
from imfuse.tracking import (
    EVAL_CONTENT_LOSS,
    EVAL_IMAGES_PER_SECOND,
    EVAL_STYLE_LOSS_SEEN,
    EVAL_STYLE_LOSS_UNSEEN,
    GATE_METRIC,
    TAG_SERVING_VERSION,
)

# Shown under each output; names identical across runs (docs/CONTRACTS.md).
METRICS = (GATE_METRIC, EVAL_STYLE_LOSS_UNSEEN, EVAL_STYLE_LOSS_SEEN, EVAL_CONTENT_LOSS, EVAL_IMAGES_PER_SECOND)
KINDS = ("serving", "registry", "local", "base")


@dataclass(frozen=True)
class VersionRef:
    kind: str
    ref: str = ""

    @classmethod
    def parse(cls, text: str) -> "VersionRef":
        kind, _, ref = (text or "").strip().partition(":")
        if kind not in KINDS or (kind in ("serving", "registry")) != bool(ref.strip()):
            raise ConfigError(
                f"unknown version {text!r}: use serving:LABEL, serving:VERSION, registry:ALIAS, "
                "registry:VERSION, local or base"
            )
        return cls(kind, ref.strip())

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.ref}" if self.ref else self.kind


@dataclass
class VersionCard:
    """What the page shows under one output."""

    id: str
    title: str
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    run_url: str | None = None
    registry: str | None = None
    note: str | None = None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class VersionCatalog:
    """Lists comparable versions and turns a VersionRef into (backend, card)."""

    def __init__(self, config: StudioConfig, local: Backend | None):
        self.config = config
        self.local = local
        self._downloaded: dict[tuple[str, int], LocalBackend] = {}
        self._base: LocalBackend | None = None
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- listing
    def options(self) -> tuple[list[dict], list[str]]:
        """([{id, title}], warnings): everything the compare pickers offer."""
        options: list[dict] = []
        warnings: list[str] = []
        cfg = self.config
        if cfg.target:
            try:
                client = ServingBackend(cfg.target, cfg.model_name, rest=cfg.rest, timeout_s=10).client()
                options += [{"id": f"serving:{row['version']}", "title": f"serving version {row['version']}"}
                            for row in client.status() if row["state"] == "AVAILABLE"]
            except ImfuseError as exc:
                warnings.append(str(exc))
            for label in cfg.serving_labels:
                try:
                    version = self._serving(label).served_version()
                except ImfuseError:
                    continue  # a label the server does not define
                options.append({"id": f"serving:{label}", "title": f"serving label {label} (version {version})"})
        else:
            options.append({"id": "local", "title": f"this studio's model ({self.local.description})"})
            if cfg.model not in (None, "", "base"):
                options.append({"id": "base", "title": "shipped base model"})
        if cfg.mlflow_uri:
            try:
                from imfuse.tracking.registry import list_versions

                infos = list_versions(cfg.registered_model, cfg.mlflow_uri)
            except ImfuseError as exc:
                warnings.append(str(exc))
                infos = []
            options += [{"id": f"registry:{alias}", "title": f"registry {alias} ({cfg.registered_model} v{info.version})"}
                        for info in infos for alias in info.aliases]
            options += [{"id": f"registry:{info.version}", "title": f"registry {cfg.registered_model} v{info.version}"}
                        for info in infos]
        return options, warnings

    # --------------------------------------------------------------- resolving
    def resolve(self, ref: VersionRef) -> tuple[Backend, VersionCard]:
        cfg = self.config
        if ref.kind == "serving":
            if not cfg.target:
                raise ConfigError("serving versions need a serving target (start the studio with --target)")
            backend = self._serving(ref.ref)
            version = backend.served_version()
            card = VersionCard(ref.id, f"serving {'version' if ref.ref.isdigit() else 'label'} {ref.ref}"
                               + ("" if ref.ref.isdigit() else f" (version {version})"))
            info = None
            if version is not None and cfg.mlflow_uri:
                from imfuse.tracking.registry import serving_version_info

                info = serving_version_info(cfg.registered_model, version, cfg.mlflow_uri)
            if info is not None:
                self._fill(card, info)
            elif cfg.mlflow_uri:
                card.note = f"no registered version of {cfg.registered_model} is tagged as serving version {version}"
            return backend, card
        if ref.kind == "registry":
            from imfuse.tracking.registry import get_version

            if not cfg.mlflow_uri:
                raise ConfigError("registry versions need MLflow (start the studio with --mlflow-uri)")
            info = get_version(cfg.registered_model, ref.ref, cfg.mlflow_uri)
            card = VersionCard(ref.id, f"registry {ref.ref}" + ("" if ref.ref.isdigit() else f" (v{info.version})"))
            self._fill(card, info)
            serving_version = info.tags.get(TAG_SERVING_VERSION)
            if cfg.target and serving_version and serving_version.isdigit():
                card.note = f"run by serving version {serving_version}"
                return self._serving(serving_version), card
            return self._downloaded_backend(info), card
        if ref.kind == "base":
            return self._base_backend(), VersionCard("base", "shipped base model", note="not an MLflow run")
        if self.local is None:
            raise ConfigError("this studio talks to a serving target; compare serving or registry versions")
        return self.local, VersionCard("local", f"this studio's model ({self.local.description})")

    def _base_backend(self) -> Backend:
        """The studio's own backend when that is the base model, else one loaded once."""
        if isinstance(self.local, LocalBackend) and self.local.is_base:
            return self.local
        with self._lock:
            if self._base is None:
                self._base = LocalBackend(None, compiled=False)  # loaded on demand, as below
            return self._base

    def _serving(self, ref: str) -> ServingBackend:
        cfg = self.config
        version, label = (int(ref), None) if ref.isdigit() else (None, ref)
        return ServingBackend(cfg.target, cfg.model_name, rest=cfg.rest, version=version, label=label,
                              timeout_s=cfg.timeout_s)

    def _fill(self, card: VersionCard, info) -> None:
        card.registry = f"{info.name} v{info.version}" + (f" ({', '.join(info.aliases)})" if info.aliases else "")
        card.metrics = {m: float(info.metrics[m]) for m in METRICS if m in info.metrics}
        card.run_id = info.run_id
        card.run_url = self._run_url(info.run_id)

    def _run_url(self, run_id: str | None) -> str | None:
        ui = self.config.ui_url
        if not ui or not run_id:
            return None
        from imfuse.tracking.client import get_client, resolve_tracking_uri, tracking_errors

        uri = resolve_tracking_uri(self.config.mlflow_uri)
        with tracking_errors(uri, f"reading run {run_id}"):
            experiment_id = get_client(uri).get_run(run_id).info.experiment_id
        return f"{ui}/#/experiments/{experiment_id}/runs/{run_id}"

    def _downloaded_backend(self, info) -> LocalBackend:
        key = (info.name, info.version)
        with self._lock:
            if key not in self._downloaded:
                from imfuse.export import packaged_keras
                from imfuse.tracking.registry import download_model

                path = download_model(info.name, str(info.version), self.config.mlflow_uri)
                # Eager calls: tracing would add about 3 s to the first comparison of this version.
                self._downloaded[key] = LocalBackend(packaged_keras(path), f"{info.name} v{info.version}", compiled=False)
            return self._downloaded[key]

