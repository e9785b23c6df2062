"""The style gallery: the demo styles of `imfuse data demo` (imfuse.data.demo), generated
once into the cache folder (no network, no files in the repository)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import threading
from pathlib import Path

from imfuse.errors import ConfigError

GALLERY_VERSION = "v1"  # bump when the generator's output changes
N_STYLES = 12
SIZE = 256
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class Gallery:
    """Demo style images under `root` (default: the imfuse cache), made on first use."""

    def __init__(self, root: str | Path | None = None):
        if root is None:
            from imfuse.base_model import cache_dir

            root = cache_dir() / "studio-gallery" / GALLERY_VERSION
        self.root = Path(root)
        self._lock = threading.Lock()

    def ensure(self) -> Path:
        """Generate the styles if missing (atomically: a half-written gallery is never used)."""
        with self._lock:
            styles = self.root / "styles"
            if styles.is_dir() and any(styles.glob("*.jpg")):
                return styles
            from imfuse.data.demo import write_demo_data

            try:
                self.root.mkdir(parents=True, exist_ok=True)
                tmp = Path(tempfile.mkdtemp(prefix=".gallery-", dir=self.root))
            except OSError:  # read-only cache: a private temp folder instead
                self.root = Path(tempfile.mkdtemp(prefix="imfuse-studio-gallery-"))
                styles, tmp = self.root / "styles", self.root / ".gen"
            write_demo_data(tmp, n_content=1, n_styles=N_STYLES, size=SIZE)
            try:
                os.replace(tmp / "styles", styles)
            except OSError:  # another process won the race: use its copy
                pass
            shutil.rmtree(tmp, ignore_errors=True)
            return styles

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.ensure().glob("*.jpg"))

    def path(self, name: str) -> Path:
        """The file of gallery style `name`; ConfigError naming the known ones otherwise."""
        if _NAME.match(name or ""):
            path = self.ensure() / f"{name}.jpg"
            if path.is_file():
                return path
        raise ConfigError(f"unknown gallery style {name!r} (known: {', '.join(self.names())})")
