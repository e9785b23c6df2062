"""Server configuration: TF Serving's own config files, parsed with its own protos.

`--model_config_file` is a `ModelServerConfig` text proto (tensorflow-serving-api ships
its Python class); `--batching_parameters_file` is a `BatchingParameters` text proto,
whose class the pip package does not ship, so it is rebuilt here from the fields of
tensorflow_serving/servables/tensorflow/session_bundle_config.proto. Reading the very
files production uses keeps the local server and TF Serving from drifting apart.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2

from imfuse.errors import ConfigError
from imfuse.serving.defaults import METRICS_PATH as DEFAULT_METRICS_PATH


@dataclass(frozen=True)
class VersionPolicy:
    """Which integer versions under a base path are served (TF Serving semantics)."""

    kind: str = "latest"  # latest | all | specific
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, available: list[int]) -> list[int]:
        """The versions to serve out of the complete ones on disk."""
        ordered = sorted(set(available))
        if self.kind == "all":
            return ordered
        if self.kind == "specific":
            return [v for v in ordered if v in self.versions]
        return ordered[-self.num_versions :] if self.num_versions > 0 else []

    def describe(self) -> str:
        if self.kind == "specific":
            return f"specific {list(self.versions)}"
        return f"latest {self.num_versions}" if self.kind == "latest" else "all"


@dataclass(frozen=True)
class ModelConfig:
    """One served model: its name, versioned base path, policy and version labels."""

    name: str
    base_path: str
    policy: VersionPolicy = VersionPolicy()
    labels: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchingOptions:
    """Server-side batching knobs (names and meaning follow TF Serving's BatchingParameters)."""

    max_batch_size: int = 8
    batch_timeout_micros: int = 5000
    max_enqueued_batches: int = 100
    num_batch_threads: int = max(1, min(4, os.cpu_count() or 1))

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_enqueued_batches", "num_batch_threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"batching parameter {name} must be >= 1, got {getattr(self, name)}")
        if self.batch_timeout_micros < 0:
            raise ConfigError(f"batch_timeout_micros must be >= 0, got {self.batch_timeout_micros}")


def _read_text(path: str | Path, what: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} file not found: {p}")
    return p.read_text(encoding="utf-8")


def _parse_text(text: str, proto, source: str):
    """`proto` filled from a text proto; a syntax error is a ConfigError naming the source and message."""
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as exc:
        raise ConfigError(f"{source}: not a valid {proto.DESCRIPTOR.name} text proto: {exc}") from None
    return proto


def _policy_from_proto(name: str, proto) -> VersionPolicy:
    which = proto.WhichOneof("policy_choice")
    if which is None or which == "latest":
        num = proto.latest.num_versions if which == "latest" and proto.latest.num_versions else 1
        return VersionPolicy("latest", num_versions=num)
    if which == "all":
        return VersionPolicy("all")
    versions = tuple(int(v) for v in proto.specific.versions)
    if not versions:
        raise ConfigError(f"model {name!r}: model_version_policy.specific lists no versions")
    return VersionPolicy("specific", versions=versions)


def parse_model_config_text(text: str, source: str = "<model config>") -> list[ModelConfig]:
    """Parse a TF Serving `model_config_list` text proto into ModelConfigs."""
    from tensorflow_serving.config import model_server_config_pb2

    return models_from_proto(_parse_text(text, model_server_config_pb2.ModelServerConfig(), source), source)


def models_from_proto(proto, source: str = "<model config>") -> list[ModelConfig]:
    """ModelServerConfig proto -> ModelConfigs (also used by HandleReloadConfigRequest)."""
    if proto.WhichOneof("config") != "model_config_list":
        raise ConfigError(f"{source}: only model_config_list is supported (custom_model_config is not)")
    models: list[ModelConfig] = []
    for cfg in proto.model_config_list.config:
        if not cfg.name or not cfg.base_path:
            raise ConfigError(f"{source}: every config needs name and base_path (got name={cfg.name!r})")
        platform = cfg.model_platform or "tensorflow"
        if platform != "tensorflow":
            raise ConfigError(f"{source}: model {cfg.name!r} has model_platform {platform!r}; only 'tensorflow'")
        models.append(
            ModelConfig(
                name=cfg.name,
                base_path=cfg.base_path,
                policy=_policy_from_proto(cfg.name, cfg.model_version_policy),
                labels={k: int(v) for k, v in cfg.version_labels.items()},
            )
        )
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: duplicate model names in model_config_list: {names}")
    if not models:
        raise ConfigError(f"{source}: model_config_list has no models")
    return models


def load_model_config_file(path: str | Path) -> list[ModelConfig]:
    """Read `--model_config_file` (relative base paths are relative to the cwd, as in TF Serving)."""
    return parse_model_config_text(_read_text(path, "model config"), str(path))


def _message_class(file_proto, message: str, *dependencies):
    """`message` of `file_proto`, built in a pool of its own (with the files it imports)."""
    pool = descriptor_pool.DescriptorPool()
    for dependency in dependencies:
        pool.AddSerializedFile(dependency.serialized_pb)
    pool.Add(file_proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{file_proto.package}.{message}"))


@functools.cache
def batching_parameters_class():
    """The `tensorflow.serving.BatchingParameters` message class, built at run time."""
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="imfuse/tensorflow_serving_batching_parameters.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    msg = file_proto.message_type.add(name="BatchingParameters")
    F = descriptor_pb2.FieldDescriptorProto
    fields = [  # in field-number order, from 1
        ("max_batch_size", F.TYPE_MESSAGE, ".google.protobuf.Int64Value", F.LABEL_OPTIONAL),
        ("batch_timeout_micros", F.TYPE_MESSAGE, ".google.protobuf.Int64Value", F.LABEL_OPTIONAL),
        ("max_enqueued_batches", F.TYPE_MESSAGE, ".google.protobuf.Int64Value", F.LABEL_OPTIONAL),
        ("num_batch_threads", F.TYPE_MESSAGE, ".google.protobuf.Int64Value", F.LABEL_OPTIONAL),
        ("thread_pool_name", F.TYPE_MESSAGE, ".google.protobuf.StringValue", F.LABEL_OPTIONAL),
        ("allowed_batch_sizes", F.TYPE_INT64, None, F.LABEL_REPEATED),
        ("pad_variable_length_inputs", F.TYPE_BOOL, None, F.LABEL_OPTIONAL),
        ("enable_large_batch_splitting", F.TYPE_BOOL, None, F.LABEL_OPTIONAL),
        ("max_execution_batch_size", F.TYPE_MESSAGE, ".google.protobuf.Int64Value", F.LABEL_OPTIONAL),
    ]
    for number, (name, ftype, type_name, label) in enumerate(fields, 1):
        msg.field.add(name=name, number=number, type=ftype, type_name=type_name, label=label)
    return _message_class(file_proto, "BatchingParameters", wrappers_pb2.DESCRIPTOR)


def parse_batching_text(text: str, source: str = "<batching parameters>") -> BatchingOptions:
    """Parse a TF Serving batching parameters text proto; unset fields keep our defaults."""
    proto = _parse_text(text, batching_parameters_class()(), source)
    names = ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads")
    return BatchingOptions(**{name: int(getattr(proto, name).value) for name in names if proto.HasField(name)})


def load_batching_file(path: str | Path) -> BatchingOptions:
    return parse_batching_text(_read_text(path, "batching parameters"), str(path))


def parse_version_labels(text: str | None) -> dict[str, int]:
    """`stable=1,canary=2` -> {'stable': 1, 'canary': 2} (the --version-labels flag)."""
    labels: dict[str, int] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        label, sep, version = part.partition("=")
        if not sep or not label.strip() or not version.strip().isdigit():
            raise ConfigError(f"--version-labels: expected LABEL=VERSION pairs like stable=1,canary=2, got {part!r}")
        labels[label.strip()] = int(version)
    return labels


@functools.cache
def monitoring_config_class():
    """`tensorflow.serving.MonitoringConfig` (monitoring_config.proto), built at run time
    like BatchingParameters: the pip package does not ship its Python class."""
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="imfuse/tensorflow_serving_monitoring_config.proto", package="tensorflow.serving", syntax="proto3"
    )
    F = descriptor_pb2.FieldDescriptorProto
    prometheus = file_proto.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=F.TYPE_BOOL, label=F.LABEL_OPTIONAL)
    prometheus.field.add(name="path", number=2, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    monitoring = file_proto.message_type.add(name="MonitoringConfig")
    monitoring.field.add(
        name="prometheus_config", number=1, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
        type_name=".tensorflow.serving.PrometheusConfig",
    )
    return _message_class(file_proto, "MonitoringConfig")


def parse_monitoring_text(text: str, source: str = "<monitoring config>") -> str | None:
    """The Prometheus path a `--monitoring_config_file` enables, or None when disabled.

    As in TF Serving, an enabled config without a path uses /monitoring/prometheus/metrics.
    """
    prometheus = _parse_text(text, monitoring_config_class()(), source).prometheus_config
    if not prometheus.enable:
        return None
    path = prometheus.path or DEFAULT_METRICS_PATH
    if not path.startswith("/") or path.startswith("/v1/"):
        raise ConfigError(f"{source}: prometheus_config.path must start with / and not with /v1/, got {path!r}")
    return path


def load_monitoring_file(path: str | Path) -> str | None:
    return parse_monitoring_text(_read_text(path, "monitoring config"), str(path))
