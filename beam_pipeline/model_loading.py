"""Loading the networks on a worker: remote weights fetched into the worker's cache, the backbone's forward
passes reported as a metric (``mimamo`` / ``backbone_latency_ms``)."""
from apache_beam.metrics import Metrics

from beam_pipeline.metrics import METRICS_NAMESPACE
from beam_pipeline.remote_files import localise_model_config
from mimamo_ops.model.predictor import MimamoModel, ModelConfig

__all__ = ["load_model"]


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
