"""MLflow tracking and model registry: the only part of imfuse that imports mlflow.

`runs` resolves the tracking URI and logs training/evaluation runs, `registry` lists,
promotes, compares and downloads registered versions, `server` starts a local
`mlflow server` on the same store (for `imfuse ui` and the tests). Names (experiment,
registered models, aliases, tags, metrics) follow docs/CONTRACTS.md.
"""

EXPERIMENT = "imfuse"
CHALLENGER = "challenger"
CHAMPION = "champion"


def registered_model_name(variant: str) -> str:
    """Registered model of a variant: one per variant so versions compare like with like."""
    return f"imfuse-{variant}"


# Artefact paths in a run: the only place they are spelled.
MODEL_ARTIFACT = "model"
EVAL_ARTIFACT = "eval"  # report.json, sample grid, pairs of an evaluation
EVAL_CURVES_ARTIFACT = "eval/curves"  # the training curves an evaluation plots
DATASET_ARTIFACT = "dataset"  # the manifest a run trained or scored on


# Metric names (docs/CONTRACTS.md): every one is train/<term> or eval/<name>, built here.
def train_metric(term: str) -> str:
    return f"train/{term}"


def eval_metric(name: str) -> str:
    return f"eval/{name}"


TRAIN_LOSS = train_metric("loss")
TRAIN_IMAGES_PER_SECOND = train_metric("images_per_second")
EVAL_CONTENT_LOSS = eval_metric("content_loss")
EVAL_STYLE_LOSS = eval_metric("style_loss")
EVAL_STYLE_LOSS_SEEN = eval_metric("style_loss_seen")
EVAL_STYLE_LOSS_UNSEEN = eval_metric("style_loss_unseen")
EVAL_IDENTITY_STYLE_LOSS = eval_metric("identity_style_loss")
EVAL_IMAGES_PER_SECOND = eval_metric("images_per_second")
# The evaluation's gate metric (lower is better): on styles training never saw, the geometric
# mean over pairs of the model's style loss / the photo's own. A mean of style losses would
# be decided by the style with the largest Gram values (imfuse.training.scoring.style_ratio).
GATE_METRIC = eval_metric("style_ratio_unseen")
# The same ratio over real reference styles no training reads (imfuse.training.scoring.REFERENCE),
# gated alike so a fine-tune cannot trade real styles for its dataset's own.
EVAL_STYLE_RATIO_REFERENCE = eval_metric("style_ratio_reference")

# Tags on runs and model versions: the only place their names are spelled.
TAG_VARIANT = "imfuse.variant"
TAG_LOSS_NETWORK = "imfuse.loss_network"
TAG_DATASET_HASH = "imfuse.dataset_hash"
TAG_GIT_COMMIT = "imfuse.git_commit"
TAG_BLESSED = "imfuse.blessed"  # "true"/"false": the evaluation's gate verdict
TAG_FORMAT = "imfuse.format"  # what the registered model artefact holds
TAG_FILE = "imfuse.file"
TAG_SERVING_VERSION = "imfuse.serving_version"  # TF Serving version folder a model version was published as
TAG_SERVING_PATH = "imfuse.serving_path"
TAG_PIPELINE_REGISTERED = "imfuse.pipeline.registered"  # set by the pipeline's register step
# What an evaluation scored (set beside TAG_BLESSED on the run it logged to).
TAG_EVAL_GATE_METRIC = "imfuse.eval.gate_metric"
TAG_EVAL_LOSS_NETWORK = "imfuse.eval.loss_network"
TAG_EVAL_IMAGE_SIZE = "imfuse.eval.image_size"
TAG_EVAL_DATASET_HASH = "imfuse.eval.dataset_hash"
TAG_RESUMED_PARAM_PREFIX = "imfuse.resumed_param."  # + a param whose value changed on resume


def baseline_metric(metric: str) -> str:
    """Name under which an evaluation logs the baseline model's value of `metric`
    (eval/x -> eval/baseline_x): the champion or init model scored on the same pairs."""
    return metric.replace(eval_metric(""), eval_metric("baseline_"), 1)
