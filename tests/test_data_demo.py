"""Tests for imfuse.data.demo: the painterly style generators, the bundled photos and
byte-identical output of write_demo_data."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imfuse.data import demo

PAINTERLY = {
    "brushwork": demo.brushwork,
    "mosaic": demo.mosaic,
    "hatching": demo.hatching,
    "marbling": demo.marbling,
    "pointillism": demo.pointillism,
    "posterized": demo.posterized_photo,
}


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", sorted(PAINTERLY))
def test_painterly_generator_size_determinism_and_contrast(name):
    fn = PAINTERLY[name]
    a = fn(np.random.default_rng(7), 176, 144)
    b = fn(np.random.default_rng(7), 176, 144)
    c = fn(np.random.default_rng(8), 176, 144)
    assert isinstance(a, Image.Image) and a.mode == "RGB" and a.size == (176, 144)
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()
    arr = np.asarray(a, dtype=np.float32)
    assert arr.std() > 12, f"{name} looks flat (std {arr.std():.1f})"
    # not a single-colour image with a few specks: several distinct colours in use
    assert len(np.unique(arr.reshape(-1, 3) // 16, axis=0)) >= 4


def test_textures_list_every_family_once_painterly_first():
    names = [n for n, _ in demo.TEXTURES]
    assert len(names) == len(set(names))
    assert set(PAINTERLY) <= set(names)
    assert set(names[: len(PAINTERLY)]) == set(PAINTERLY)
    assert len(demo.TEXTURES) >= len(PAINTERLY) and len(PAINTERLY) <= 12  # default n_styles covers them


def test_posterized_photo_falls_back_without_photos(monkeypatch):
    monkeypatch.setattr(demo, "dependency_photos", lambda: [])
    im = demo.posterized_photo(np.random.default_rng(3), 128, 96)
    assert im.mode == "RGB" and im.size == (128, 96)
    assert np.asarray(im, dtype=np.float32).std() > 12


@pytest.mark.skipif(importlib.util.find_spec("skimage") is None, reason="scikit-image not installed")
def test_skimage_photos_are_found_offline():
    photos = dict(demo.dependency_photos())
    for stem in ("astronaut", "coffee", "chelsea", "rocket"):
        path = photos.get(f"skimage_{stem}")
        assert path is not None and path.is_file(), stem
        with Image.open(path) as im:
            assert im.convert("RGB").size[0] >= 256


def test_dependency_photos_only_existing_files():
    assert all(path.is_file() for _, path in demo.dependency_photos())


def test_reference_styles_are_shipped_and_never_demo_data():
    """The evaluation's real reference styles: all six found offline, none of them a demo photo."""
    refs = dict(demo.reference_styles())
    assert sorted(p.name for p in refs.values()) == [
        "brick.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "ihc.png", "retina.jpg"]
    assert all(p.is_file() for p in refs.values())
    assert not set(refs.values()) & {p for _, p in demo.dependency_photos()}


def test_write_demo_data_is_byte_identical_and_covers_all_families(tmp_path):
    n_styles = len(demo.TEXTURES)
    first = demo.write_demo_data(tmp_path / "a", n_content=3, n_styles=n_styles, size=48)
    demo.write_demo_data(tmp_path / "b", n_content=3, n_styles=n_styles, size=48)
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    assert len(first["content"]) == 3 and len(first["styles"]) == n_styles
    families = {p.stem.rsplit("_", 1)[0] for p in first["styles"]}
    assert families == {n for n, _ in demo.TEXTURES}
    for p in first["styles"]:
        with Image.open(p) as im:
            assert im.mode == "RGB" and min(im.size) == 48
