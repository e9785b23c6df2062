"""KFP component `train-model`: the run directory as a `Model` artefact (logic: steps/train.py)."""

# No `from __future__ import annotations`: KFP reads the real types of the signature.
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train_model(
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    variant: str = "reduced",
    steps: int = 1000,
    image_size: int = 256,
    batch_size: int = 4,
    mlflow_uri: str = "",
    init_from: str = "auto",
    learning_rate: float = 1e-4,
    teacher: str = "",
    distill_only: bool = False,
):
    """Train the `variant` network on the dataset; logs to MLflow, does not register.

    init_from auto: fine-tune the registry's champion, else the shipped base model, on the
    Gatys losses (style crops at image_size, the evaluation's scale), plus the teacher's L1
    term when one is given (distill_only: that term alone)."""
    from components.steps.train import train_stage

    info = train_stage(
        dataset.path, model.path, variant, steps, image_size, batch_size, mlflow_uri, init_from, learning_rate, teacher,
        distill_only,
    )
    for name, value in info.pop("metrics").items():
        metrics.log_metric(name, value)
    model.metadata.update(info)
    model.metadata["dataset_hash"] = dataset.metadata.get("dataset_hash", "")
    model.metadata["file"] = "model.keras"
