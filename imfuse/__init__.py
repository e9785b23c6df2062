"""imfuse: arbitrary neural style transfer with a full MLOps lifecycle."""

__version__ = "0.1.0"
