"""Transport-independent Predict: resolve the servable, check inputs, batch, filter.

gRPC and REST both call `Predictor.predict`, so the two APIs cannot disagree on
semantics (version/label selection, defaults, errors, batching).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import grpc
import numpy as np

from imfuse.serving.batching import Batcher
from imfuse.serving.limits import RequestLimits, check_image_budget
from imfuse.serving.metrics import ServingMetrics
from imfuse.serving.model_store import ModelStore
from imfuse.serving.status import StatusError, invalid_argument
from imfuse.serving.tensors import batch_size_of


@dataclass
class PredictResult:
    """Outputs plus the model spec actually used (echoed back in PredictResponse)."""

    name: str
    version: int
    signature_name: str
    outputs: dict[str, np.ndarray]


@dataclass(eq=False)
class Predictor:
    """Runs Predict requests against a ModelStore, through a Batcher when one is given."""

    store: ModelStore
    batcher: Batcher | None = None
    max_request_bytes: int | None = None
    limits: RequestLimits = RequestLimits()
    metrics: ServingMetrics = field(default_factory=ServingMetrics)

    def check_size(self, nbytes: int) -> None:
        """Explicit request bound (on top of gRPC's own receive limit)."""
        if self.max_request_bytes and nbytes > self.max_request_bytes:
            raise StatusError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"request of {nbytes} bytes exceeds the server limit of {self.max_request_bytes} bytes "
                "(--max-request-bytes)",
            )

    def predict(
        self,
        name: str,
        inputs: dict[str, np.ndarray],
        *,
        version: int | None = None,
        label: str | None = None,
        signature_name: str = "",
        output_filter: tuple[str, ...] = (),
    ) -> PredictResult:
        servable = self.store.resolve(name, version, label)
        sig_key, checked = servable.prepare(signature_name, inputs)
        outputs_known = servable.signature_defs[sig_key].outputs
        unknown = sorted(set(output_filter) - set(outputs_known))
        if unknown:
            raise invalid_argument(
                f"output tensor alias(es) {unknown} not found in signature '{sig_key}'; it has {sorted(outputs_known)}",
            )
        size = batch_size_of(checked)
        check_image_budget(checked, self.limits)  # from headers, before anything decodes
        run = functools.partial(self._run, servable, sig_key)
        if self.batcher is not None and all(a.ndim > 0 for a in checked.values()):
            outputs = self.batcher.submit((id(servable), sig_key), checked, size, run).result()
        else:
            outputs = run(checked)
        if output_filter:
            outputs = {k: v for k, v in outputs.items() if k in output_filter}
        return PredictResult(servable.name, servable.version, sig_key, outputs)

    def _run(self, servable, sig_key: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One model execution (a request or a merged batch); its rows feed the batch-size histogram."""
        self.metrics.batch_size.observe(batch_size_of(inputs))
        return servable.run(sig_key, inputs)
