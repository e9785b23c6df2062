"""Which container image the pipeline steps name (`base_image`).

The tag is the package version, so a compiled pipeline always names the image built
from the same source (`components/Dockerfile`, `components/Dockerfile.gpu`). A registry
prefix comes from IMFUSE_IMAGE_REGISTRY when the pipeline is compiled (docs/kubernetes.md);
kfp.local's SubprocessRunner ignores the image and runs the same code in this venv.
"""

from __future__ import annotations

import os

from imfuse import __version__

REGISTRY_ENV = "IMFUSE_IMAGE_REGISTRY"
IMAGE_NAME = "imfuse"


def registry_prefix(value: str | None = None) -> str:
    """'' or 'host/path/' (a trailing slash added, so both spellings of the env work)."""
    prefix = (os.environ.get(REGISTRY_ENV, "") if value is None else value).strip()
    return f"{prefix.rstrip('/')}/" if prefix else ""


def image(gpu: bool = False, registry: str | None = None) -> str:
    """'imfuse:0.1.0' / 'imfuse:0.1.0-gpu', with the registry prefix if one is set."""
    return f"{registry_prefix(registry)}{IMAGE_NAME}:{__version__}{'-gpu' if gpu else ''}"


IMAGE = image()
GPU_IMAGE = image(gpu=True)
