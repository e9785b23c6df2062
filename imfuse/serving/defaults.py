"""Serving defaults as plain constants: the one source for `imfuse serve`'s flags and the
serving modules, importable without TensorFlow or gRPC (the CLI builds its help from them)."""

MODEL_NAME = "imfuse"  # the served model: BASE/<name>/<version>, exports, the pipeline, serve and clients
MAX_IMAGES_PER_REQUEST = 32
MAX_PIXELS_PER_REQUEST = 64_000_000
ADMIN_PORT = 8502  # model management (HandleReloadConfigRequest), 127.0.0.1 only
METRICS_PATH = "/monitoring/prometheus/metrics"  # TF Serving's Prometheus path
