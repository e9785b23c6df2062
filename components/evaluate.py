"""KFP component `evaluate-model`: metrics, an HTML report with the sample grid, and `blessed`
(logic: steps/evaluate.py)."""

# No `from __future__ import annotations`: KFP reads the real types of the signature.
from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def evaluate_model(
    model: Input[Model],
    dataset: Input[Dataset],
    metrics: Output[Metrics],
    report: Output[HTML],
    mlflow_uri: str = "",
    image_size: int = 256,
    max_pairs: int = 8,
    gatys_steps: int = 50,
    gate_tolerance: float = 0.0,
    reference_styles: bool = True,
) -> bool:
    """Gatys metrics vs identity/Gatys/champion; returns `blessed`, which gates registration and export.

    A single output (not a NamedTuple): kfp 2.17's local runner cannot resolve a named
    output in a condition nested in a branch.
    """
    import math
    import tempfile

    from components.steps.evaluate import evaluate_stage, render_report_html

    with tempfile.TemporaryDirectory(prefix="imfuse-eval-") as out_dir:
        result = evaluate_stage(
            model.path, dataset.path, out_dir, mlflow_uri, image_size, max_pairs, gatys_steps, gate_tolerance,
            reference_styles,
        )
        page = render_report_html(result.report, out_dir)
    with open(report.path, "w", encoding="utf-8") as handle:
        handle.write(page)
    for name, value in result.report["metrics"].items():
        if math.isfinite(float(value)):
            metrics.log_metric(name, float(value))
    blessing = result.blessing
    print(f"blessing: {blessing.summary()}")
    report.metadata.update({"blessed": bool(blessing.blessed), "gate_metric": blessing.metric, "reason": blessing.reason})
    return bool(blessing.blessed)
