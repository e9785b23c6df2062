"""Evaluation pictures: the content x style sample grid and training-curve plots.

The grid is assembled with numpy/Pillow (exact pixels, no figure margins); curves use
matplotlib's Agg backend so they render without a display.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from imfuse.images import to_uint8
from imfuse.training.progress import read_history

GAP = 4


def sample_grid(
    contents: Sequence[np.ndarray],
    styles: Sequence[np.ndarray],
    cells: Sequence[Sequence[np.ndarray]],
    path: str | os.PathLike,
    style_labels: Sequence[str] | None = None,
    tile: int = 128,
    row_labels: Sequence[str] | None = None,
) -> Path:
    """Write a grid PNG: header row = style thumbnails, first column = contents,
    cell (i, j) = content i stylised with style j. Every image is resized to `tile`.
    Labels are drawn over the header's style tiles and the first column's content tiles."""
    rows, cols = len(contents), len(styles)
    if rows == 0 or cols == 0:
        raise ValueError("sample grid needs at least one content and one style")
    step = tile + GAP
    canvas = Image.new("RGB", (GAP + step * (cols + 1), GAP + step * (rows + 1)), (255, 255, 255))

    def put(rgb: np.ndarray, row: int, col: int) -> None:
        im = Image.fromarray(to_uint8(rgb)).resize((tile, tile), Image.Resampling.LANCZOS)
        canvas.paste(im, (GAP + col * step, GAP + row * step))

    for j, style in enumerate(styles):
        put(style, 0, j + 1)
    for i, content in enumerate(contents):
        put(content, i + 1, 0)
        for j in range(cols):
            put(cells[i][j], i + 1, j + 1)
    draw = ImageDraw.Draw(canvas)
    labels = [((0, j + 1), label) for j, label in enumerate(style_labels or ())]
    labels += [((i + 1, 0), label) for i, label in enumerate(row_labels or ())]
    for (row, col), label in labels:
        x, y = GAP + col * step + 2, GAP + row * step + 2
        draw.rectangle((x - 1, y - 1, x + 6 * len(label) + 2, y + 11), fill=(0, 0, 0))
        draw.text((x, y), label, fill=(255, 255, 255))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)
    return out


def loss_curves(history_path: str | os.PathLike, out_dir: str | os.PathLike) -> list[Path]:
    """One PNG per loss term found in the history (`train/loss` -> curve_train_loss.png)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    records = read_history(history_path)
    names = sorted({k for _, values in records for k in values if k.split("/")[-1].endswith("loss")})
    out_dir = Path(out_dir)
    written = []
    for name in names:
        steps, values = zip(*sorted((step, values[name]) for step, values in records if name in values))
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
        ax.plot(steps, values, linewidth=1.2)
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        ax.set_title(name)
        if min(values) > 0 and max(values) / max(min(values), 1e-30) > 100:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        out_dir.mkdir(parents=True, exist_ok=True)
        target = out_dir / f"curve_{name.replace('/', '_')}.png"
        fig.savefig(target)
        plt.close(fig)
        written.append(target)
    return written
