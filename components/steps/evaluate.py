"""Pipeline step 3: score the trained model, bless it or not, show the sample grid.

Thin over `imfuse.training.evaluate` (which also logs metrics, grid and blessing into
the training's MLflow run). The step returns `blessed`, on which the pipeline branches,
logs every eval number as a KFP metric, and renders an HTML page with the sample grid
and curves embedded as base64 PNGs (KFP's UI shows HTML artefacts inline).
"""

from __future__ import annotations

import base64
import html
from pathlib import Path


def _img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}" style="max-width:100%">'


def render_report_html(report: dict, out_dir: str | Path) -> str:
    """One self-contained page: verdict, metrics table, sample grid and loss curves."""
    out_dir = Path(out_dir)
    blessing = report["blessing"]
    verdict = "blessed" if blessing["blessed"] else "NOT blessed"
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{value:.6g}</td></tr>" for name, value in sorted(report["metrics"].items())
    )
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>imfuse evaluation</title></head><body>",
        f"<h2>imfuse evaluation: {html.escape(report['registered_model'])} ({html.escape(verdict)})</h2>",
        f"<p>{html.escape(blessing['reason'])}</p>",
        f"<p>{report['counts']['pairs']} pairs at {report['image_size']} px, loss network "
        f"{html.escape(report['loss_network'])}, dataset {html.escape(str(report['dataset_hash']))}</p>",
        "<h3>Sample grid (rows: content; columns: seen then unseen styles)</h3>",
    ]
    grid = out_dir / report["artifacts"]["grid"]
    parts.append(_img_tag(grid, "sample grid") if grid.is_file() else "<p>(no grid)</p>")
    curves = [out_dir / p for p in report["artifacts"].get("curves", [])]
    if curves:
        parts.append("<h3>Training curves</h3>")
        parts += [_img_tag(p, p.stem) for p in curves if p.is_file()]
    parts.append(f"<h3>Metrics</h3><table border='1' cellpadding='4'>{rows}</table></body></html>")
    return "\n".join(parts)


def evaluate_stage(
    model_dir: str,
    data_dir: str,
    out_dir: str,
    mlflow_uri: str,
    image_size: int,
    max_pairs: int,
    gatys_steps: int,
    gate_tolerance: float,
    reference_styles: bool = True,
):
    """Run the evaluation of RUN_DIR/model.keras; returns imfuse's EvalResult."""
    from imfuse.training.checkpoints import MODEL_FILE
    from imfuse.training.evaluate import EvalConfig, evaluate

    cfg = EvalConfig(
        model_path=str(Path(model_dir) / MODEL_FILE),
        data_dir=data_dir,
        out_dir=out_dir,
        tracking_uri=mlflow_uri or None,
        image_size=max(int(image_size), 32),
        max_pairs=int(max_pairs) if max_pairs > 0 else None,
        gatys_subset=1 if gatys_steps > 0 else 0,
        gatys_steps=max(int(gatys_steps), 1),
        gate_tolerance=float(gate_tolerance),
        reference_styles=bool(reference_styles),
        progress=False,
    )
    return evaluate(cfg)
