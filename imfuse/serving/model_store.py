"""Versioned model store: polls base paths, loads and unloads versions like TF Serving.

Each model's base path holds integer version folders; a folder counts once its
saved_model.pb exists. The version policy decides which complete versions are served.
New versions load before old ones unload (TF Serving's availability-preserving policy),
and a version that failed to load is retried only after its files change.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import grpc

from imfuse.errors import ImfuseError
from imfuse.serving.config import ModelConfig
from imfuse.serving.servable import Servable, load_servable
from imfuse.serving.status import StatusError, error_id
from imfuse.versions import saved_model_versions

log = logging.getLogger("imfuse.serving")

# ModelVersionStatus.State names (tensorflow_serving/apis/get_model_status.proto).
LOADING, AVAILABLE, END = "LOADING", "AVAILABLE", "END"


@dataclass
class VersionState:
    """What GetModelStatus reports for one version; `error` is set when loading failed.

    `error` is the full detail (paths, exception text): it goes to the server log and
    the loopback admin port only; public ports show `public_error`, which names the
    `error_id` logged with it.
    """

    state: str
    error: str = ""
    fingerprint: tuple = ()
    error_id: str = ""

    def public_error(self, version: int) -> str:
        """The failure as a client on the public ports sees it: no paths, no exception text."""
        if not self.error:
            return ""
        return f"version {version} failed to load; see the server log (error id {self.error_id})"


def _fingerprint(path: Path) -> tuple:
    """Sizes and mtimes of a version folder's files: changes when a copy completes."""
    try:
        return tuple(
            sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*") if p.is_file())
        )
    except OSError:
        return ()


class ModelStore:
    """Thread-safe registry of loaded versions per model, kept in sync with disk by poll()."""

    def __init__(self, models: list[ModelConfig], loader: Callable[[str, int, Path], Servable] = load_servable):
        self._lock = threading.RLock()
        self._poll_lock = threading.Lock()
        self._loader = loader
        self._models: dict[str, ModelConfig] = {m.name: m for m in models}
        self._servables: dict[str, dict[int, Servable]] = {m.name: {} for m in models}
        self._states: dict[str, dict[int, VersionState]] = {m.name: {} for m in models}
        self._warned_missing: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- syncing with disk -------------------------------------------------------
    def poll(self) -> None:
        """One pass over every model's base path: load aspired versions, unload others."""
        with self._poll_lock:
            with self._lock:
                models = list(self._models.values())
            for cfg in models:
                self._sync_model(cfg)

    def _sync_model(self, cfg: ModelConfig) -> None:
        if not Path(cfg.base_path).is_dir() and cfg.name not in self._warned_missing:
            log.warning("model %s: base path %s does not exist (yet); waiting for versions", cfg.name, cfg.base_path)
            self._warned_missing.add(cfg.name)
        on_disk = saved_model_versions(cfg.base_path)
        aspired = cfg.policy.select(list(on_disk))
        with self._lock:
            loaded = dict(self._servables.get(cfg.name, {}))
            states = self._states.setdefault(cfg.name, {})
        for version in aspired:
            if version in loaded:
                continue
            path = on_disk[version]
            fingerprint = _fingerprint(path)
            previous = states.get(version)
            if previous and previous.error and previous.fingerprint == fingerprint:
                continue  # failed before and nothing changed: don't hammer the disk
            self._load(cfg.name, version, path, fingerprint)
        with self._lock:
            loaded = dict(self._servables.get(cfg.name, {}))
        if any(v in loaded for v in aspired) or not aspired:
            for version in sorted(set(loaded) - set(aspired)):
                self._unload(cfg.name, version)

    def _load(self, name: str, version: int, path: Path, fingerprint: tuple) -> None:
        with self._lock:
            self._states[name][version] = VersionState(LOADING, fingerprint=fingerprint)
        start = time.perf_counter()
        try:
            servable = self._loader(name, version, path)
        except ImfuseError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - a bad model must not kill the server
            error = f"{type(exc).__name__}: {exc}"
        else:
            with self._lock:
                if name in self._models:
                    self._servables[name][version] = servable
                    self._states[name][version] = VersionState(AVAILABLE, fingerprint=fingerprint)
            log.info("loaded model %s version %d from %s in %.2fs", name, version, path, time.perf_counter() - start)
            return
        eid = error_id()
        with self._lock:
            self._states[name][version] = VersionState(END, error=error, fingerprint=fingerprint, error_id=eid)
        log.error("failed to load model %s version %d (error id %s): %s", name, version, eid, error)

    def _unload(self, name: str, version: int) -> None:
        with self._lock:
            self._servables[name].pop(version, None)
            self._states[name][version] = VersionState(END)
        log.info("unloaded model %s version %d", name, version)

    def start_polling(self, wait_s: float) -> None:
        """Poll in a daemon thread every `wait_s` seconds (0 disables, like TF Serving)."""
        if wait_s <= 0 or self._thread is not None:
            return

        def loop() -> None:
            while not self._stop.wait(wait_s):
                try:
                    self.poll()
                except Exception:  # noqa: BLE001 - keep polling; log the reason
                    log.exception("model poll failed")

        self._thread = threading.Thread(target=loop, name="imfuse-model-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def reload(self, models: list[ModelConfig]) -> None:
        """Replace the model list (HandleReloadConfigRequest); dropped models unload."""
        with self._lock:
            dropped = set(self._models) - {m.name for m in models}
            self._models = {m.name: m for m in models}
            for m in models:
                self._servables.setdefault(m.name, {})
                self._states.setdefault(m.name, {})
        for name in dropped:
            for version in sorted(self._servables.get(name, {})):
                self._unload(name, version)
            with self._lock:
                self._servables.pop(name, None)
                self._states.pop(name, None)
        self.poll()

    # --- lookups ------------------------------------------------------------------
    def model_names(self) -> list[str]:
        with self._lock:
            return sorted(self._models)

    def loaded_versions(self, name: str) -> list[int]:
        with self._lock:
            return sorted(self._servables.get(name, {}))

    def _config(self, name: str) -> ModelConfig:
        cfg = self._models.get(name)
        if cfg is None:
            raise StatusError(
                grpc.StatusCode.NOT_FOUND,
                f"Servable not found for request: model '{name}' is not served here (models: {sorted(self._models)})",
            )
        return cfg

    def _label_version(self, cfg: ModelConfig, label: str) -> int:
        if label not in cfg.labels:
            raise StatusError(
                grpc.StatusCode.NOT_FOUND,
                f"model '{cfg.name}' has no version label '{label}' (labels: {sorted(cfg.labels) or 'none'})",
            )
        return cfg.labels[label]

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The servable a request's ModelSpec names; NOT_FOUND when it isn't available."""
        with self._lock:
            cfg = self._config(name)
            loaded = self._servables.get(name, {})
            if label:
                version = self._label_version(cfg, label)
                if version not in loaded:
                    raise StatusError(
                        grpc.StatusCode.NOT_FOUND,
                        f"label '{label}' of model '{name}' points to version {version}, which is not "
                        f"available (available: {sorted(loaded)})",
                    )
            if version is not None:
                if version not in loaded:
                    raise StatusError(
                        grpc.StatusCode.NOT_FOUND,
                        f"Servable not found for request: Specific({name}, {version}); "
                        f"available versions: {sorted(loaded)}",
                    )
                return loaded[version]
            if not loaded:
                # The base path stays in the server log (poll warnings), not in replies.
                raise StatusError(
                    grpc.StatusCode.NOT_FOUND,
                    f"Servable not found for request: Latest({name}); no version is available yet",
                )
            return loaded[max(loaded)]

    def version_states(self, name: str, version: int | None = None, label: str | None = None) -> dict[int, VersionState]:
        """GetModelStatus view: every version seen, or the one a version/label names."""
        with self._lock:
            cfg = self._config(name)
            states = dict(self._states.get(name, {}))
            if label:
                version = self._label_version(cfg, label)
            if version is not None:
                if version not in states:
                    raise StatusError(
                        grpc.StatusCode.NOT_FOUND,
                        f"model '{name}' has never had version {version} (seen: {sorted(states)})",
                    )
                return {version: states[version]}
            return states
