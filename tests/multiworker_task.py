"""One MultiWorkerMirroredStrategy task of tests/test_training_multiworker.py, run as its
own process: TF_CONFIG comes from the test; prints the run's start step, end step and a
digest of its final weights as one JSON line."""

from __future__ import annotations

import hashlib
import json
import sys


def main(data_dir: str, out_dir: str, steps: int) -> None:
    from imfuse.networks import load_model
    from imfuse.training import train
    from imfuse.training.config import TrainConfig

    config = TrainConfig(
        data_dir=data_dir, out_dir=out_dir, variant="reduced", steps=steps, batch_size=2, image_size=32,
        style_size=32, checkpoint_every=2, log_every=1, seed=5, strategy="multiworker", augment=False,
    )
    result = train(config, progress=False)
    digest = hashlib.sha256()
    for weight in load_model(result.model_path).get_weights():
        digest.update(weight.tobytes())
    print(json.dumps({"start_step": result.start_step, "step": result.step, "weights": digest.hexdigest()}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
