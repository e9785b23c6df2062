"""What the training steps ask of a cluster, shared by the in-pod train task
(pipelines/training_pipeline.py) and the replicas of a distributed TFJob
(components/steps/train_distributed.py), so the two cannot drift apart.

Plain constants only: this module is imported inside the project image at run time too.
"""

from __future__ import annotations

GPU_RESOURCE = "nvidia.com/gpu"
# GPU feature discovery's label and the taint key GPU nodes commonly carry (k8s/overlays/gpu).
GPU_NODE_LABEL = ("nvidia.com/gpu.present", "true")

# requests/limits of one training process: the in-pod task, and each TFJob replica.
TRAIN_RESOURCES = {
    "cpu": {"requests": {"cpu": "2", "memory": "6G"}, "limits": {"cpu": "4", "memory": "12G"}},
    "gpu": {"requests": {"cpu": "4", "memory": "16G"}, "limits": {"cpu": "8", "memory": "32G"}},
}
GPUS_PER_REPLICA = 1

# Cluster settings every step reads when present (both optional).
SETTINGS_CONFIGMAP = "imfuse-settings"
SETTINGS_ENV = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_S3_ENDPOINT_URL",
    "AWS_ENDPOINT_URL",
    "IMFUSE_SERVING_BASE_PATH",
    "IMFUSE_MODEL_NAME",
)
S3_SECRET = "imfuse-s3"
S3_SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")

# Distributed training: the ReadWriteMany claim (k8s/training/) that the launching step
# and every TFJob replica mount at the same path, so --data and --out mean the same there.
SHARED_PVC = "imfuse-training"
SHARED_MOUNT = "/shared"
