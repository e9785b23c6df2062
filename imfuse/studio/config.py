"""StudioConfig: everything `imfuse studio` is started with (no TensorFlow import here)."""

from __future__ import annotations

from dataclasses import dataclass

from imfuse.errors import ConfigError
from imfuse.serving.defaults import MODEL_NAME
from imfuse.tracking import registered_model_name

DEFAULT_PORT = 8765


@dataclass(frozen=True)
class StudioConfig:
    """Where the studio gets its stylisations from and what it may accept.

    `target` None means the studio loads `model` itself (None/'base': the shipped base
    model), so it works right after set-up; with a target (HOST:PORT of `imfuse serve` or
    TF Serving, the REST port with `rest`) every stylisation is a serving call.
    `mlflow_uri` enables registry versions and metrics in the compare view;
    `mlflow_ui_url` is where a browser reaches the MLflow UI (default: the tracking URI
    when it is http(s)).
    """

    target: str | None = None
    rest: bool = False
    model_name: str = MODEL_NAME
    model: str | None = None
    mlflow_uri: str | None = None
    mlflow_ui_url: str | None = None
    registered_model: str = registered_model_name("reduced")
    serving_labels: tuple[str, ...] = ("stable", "canary")
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    timeout_s: float = 60.0
    max_upload_bytes: int = 32 * 1024 * 1024
    max_side: int = 4096  # largest "process at" size offered (longer side, px)
    max_gatys_steps: int = 1000
    max_gatys_size: int = 1024

    def validate(self) -> None:
        if not 0 <= self.port < 65536:
            raise ConfigError(f"--port must be a port number, got {self.port}")
        if self.target is not None and not self.target.strip():
            raise ConfigError("--target must be HOST:PORT of a serving endpoint")
        if not self.model_name:
            raise ConfigError("--model-name must not be empty")
        if self.timeout_s <= 0:
            raise ConfigError(f"--timeout must be positive, got {self.timeout_s}")
        if self.target and self.model not in (None, "", "base"):
            raise ConfigError("give either --target (a serving endpoint) or --model (loaded here), not both")

    @property
    def ui_url(self) -> str | None:
        """Base URL of the MLflow UI for run links, or None when there is none to link to."""
        url = self.mlflow_ui_url
        if not url and self.mlflow_uri and self.mlflow_uri.startswith(("http://", "https://")):
            url = self.mlflow_uri
        return url.rstrip("/") if url else None
