"""Loading the networks on a worker: remote weights fetched into the worker's cache, the backbone's forward
passes reported as a metric (``mimamo`` / ``backbone_latency_ms``)."""
from typing import Callable

from apache_beam.metrics import Metrics
from apache_beam.utils import shared

from beam_pipeline.metrics import METRICS_NAMESPACE
from beam_pipeline.remote_files import localise_model_config
from mimamo_ops.model.predictor import MimamoModel, ModelConfig

__all__ = ["load_model", "shared_model"]


class _BackboneTimer:
    """Reports each backbone forward pass (one compute batch) to ``backbone_latency_ms``, whatever the runtime."""

    def __init__(self):
        self._latency = Metrics.distribution(METRICS_NAMESPACE, "backbone_latency_ms")

    def record(self, seconds: float) -> None:
        self._latency.update(int(seconds * 1000))


def load_model(config: ModelConfig) -> MimamoModel:
    """Fetches remote weights into the worker's cache, loads the networks and times the backbone's passes."""
    model = MimamoModel.load(localise_model_config(config))
    model.backbone.add_batch_listener(_BackboneTimer().record)
    return model


def shared_model(handle: shared.Shared, loader: Callable[[ModelConfig], MimamoModel],
                 config: ModelConfig) -> MimamoModel:
    """The process's model for ``config``: loaded once per process by ``loader`` and shared by every DoFn that asks
    with an equal config (the prediction and the work units' steps hold one copy between them)."""
    return handle.acquire(lambda: loader(config), tag=repr(config))
