"""The imfuse Kubeflow pipeline (`training_pipeline`) and its checked-in compiled YAML."""

from pathlib import Path

COMPILED_YAML = Path(__file__).resolve().parent / "imfuse_pipeline.yaml"
