"""MLflow tracking and model registry: the only part of imfuse that imports mlflow.

`runs` resolves the tracking URI and logs training/evaluation runs, `registry` lists,
promotes, compares and downloads registered versions, `server` starts a local
`mlflow server` on the same store (for `imfuse ui` and the tests). Names (experiment,
registered models, aliases, tags, metrics) follow docs/CONTRACTS.md.
"""

EXPERIMENT = "imfuse"
CHALLENGER = "challenger"
CHAMPION = "champion"
MODEL_ARTIFACT = "model"


def registered_model_name(variant: str) -> str:
    """Registered model of a variant: one per variant so versions compare like with like."""
    return f"imfuse-{variant}"
