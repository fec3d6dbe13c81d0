"""The project's Beam metrics: their namespace, and reading a finished job's counters back.

Counters (``videos_ok``, ``videos_failed``, ``videos_no_face``, ``frames_decoded``, ``frames_with_face``,
``faces_found``, ``snippets``, ``frame_rows``, ``face_crops``, ``videos_committed``) count this run's work; the
``table_*`` counters (``table_videos_ok``, ``table_videos_no_face``, ``table_videos_failed``, ``table_frame_rows``)
count what the tables hold once they are built, earlier runs' commits included. Distributions carry their unit in
their name (``load_model_latency_ms``, ``face_stage_latency_ms``, ``predict_latency_ms``, ``video_latency_ms``,
``backbone_latency_ms``, ``commit_latency_ms``).
"""
from typing import Dict

from apache_beam.metrics.metric import MetricsFilter

__all__ = ["METRICS_NAMESPACE", "read_counters"]

METRICS_NAMESPACE = "mimamo"


def read_counters(result) -> Dict[str, int]:
    """Committed counters of the ``mimamo`` namespace of a ``PipelineResult``, by name (summed over steps)."""
    counters: Dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))["counters"]:
        name = counter.key.metric.name
        counters[name] = counters.get(name, 0) + int(counter.committed or 0)
    return counters
