"""KFP component `train-distributed-model`: training in a TFJob (chief + `workers` workers),
the chief's run directory as the same `Model` artefact `train-model` gives
(logic: steps/train_distributed.py)."""

# No `from __future__ import annotations`: KFP reads the real types of the signature.
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.image import IMAGE


@dsl.component(base_image=IMAGE, install_kfp_package=False)
def train_distributed_model(
    dataset: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    workers: int = 2,
    variant: str = "reduced",
    steps: int = 1000,
    image_size: int = 256,
    batch_size: int = 4,
    mlflow_uri: str = "",
    init_from: str = "auto",
    learning_rate: float = 1e-4,
    teacher: str = "",
    distill_only: bool = False,
    run_id: str = "",
    cpu_image: str = "",
    gpu_image: str = "",
):
    """Launch a Kubeflow Training Operator TFJob running `imfuse train --strategy multiworker`
    with the in-pod step's arguments (GPU image and one GPU per replica for `full`), wait
    for it, and publish the chief's model; logs to MLflow, does not register.

    Needs the shared claim mounted at /shared and RBAC on tfjobs (k8s/training/); run_id
    (the pipeline run's) names the job so a retry re-attaches to it."""
    from components.steps.train_distributed import train_distributed_stage

    info = train_distributed_stage(
        dataset.path, model.path, workers, variant, steps, image_size, batch_size, mlflow_uri, init_from,
        learning_rate, teacher, distill_only, run_id=run_id, cpu_image=cpu_image, gpu_image=gpu_image,
    )
    for name, value in info.pop("metrics").items():
        metrics.log_metric(name, value)
    model.metadata.update(info)
    model.metadata["dataset_hash"] = dataset.metadata.get("dataset_hash", "")
    model.metadata["file"] = "model.keras"
