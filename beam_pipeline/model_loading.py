"""Loading the networks on a worker: remote weights fetched into the worker's cache, the backbone's forward
passes reported as a metric (``mimamo`` / ``backbone_latency_ms``), and the backbone either loaded in each process
or shared by every process of the machine (``--backbone_sharing``)."""
import functools
import logging
import threading
import time
import uuid
from typing import Callable, List, Optional

import numpy as np
from apache_beam.metrics import Metrics
from apache_beam.utils import multi_process_shared, shared

from beam_pipeline.flags import BACKBONE_SHARING
from beam_pipeline.metrics import METRICS_NAMESPACE
from beam_pipeline.remote_files import localise_model_config
from mimamo_ops.model.backbone import resize_faces
from mimamo_ops.model.backbone_batching import BatchingBackbone
from mimamo_ops.model.backbone_runner import BackboneRunner, choose_batch_size
from mimamo_ops.model.predictor import MimamoModel, ModelConfig

__all__ = ["MachineBackbone", "backbone_sharing_for", "load_model", "model_loader", "shared_model"]

LOGGER = logging.getLogger(__name__)


class _BackboneTimer:
    """Reports each backbone forward pass (one compute batch) to ``backbone_latency_ms``, whatever the runtime."""

    def __init__(self):
        self._latency = Metrics.distribution(METRICS_NAMESPACE, "backbone_latency_ms")

    def record(self, seconds: float) -> None:
        self._latency.update(int(seconds * 1000))


def backbone_sharing_for(sharing: str, device: str) -> str:
    """``process`` or ``machine``: what ``--backbone_sharing`` means on ``device`` (``auto``: machine on a GPU).

    One model per GPU holds the GPU's memory once and fills its batches from every process's tracks; on the CPU
    the processes' own backbones keep every core busy with no transfer between processes."""
    if sharing not in BACKBONE_SHARING:
        raise ValueError(f"backbone_sharing must be one of {BACKBONE_SHARING}, got {sharing!r}")
    if sharing == "auto":
        return "machine" if device.startswith("cuda") else "process"
    return sharing


def _machine_backbone(config: ModelConfig) -> BatchingBackbone:
    """Builds the machine's one backbone (runs in the process that hosts it): the compute batch is the
    device's whole batch (``compute_batch_size``, else sized for one process on the device)."""
    batch = config.backbone_batch_size or choose_batch_size(config.device, processes=1)
    runner = BackboneRunner.from_file(config.backbone_path, device=config.device, batch_size=batch,
                                      precision=config.precision, runtime=config.runtime)
    LOGGER.info("one backbone for this machine on %s, batches of %d faces", config.device, batch)
    return BatchingBackbone(runner)


class MachineBackbone:
    """This process's handle on the machine's one backbone (``apache_beam.utils.multi_process_shared``): the first
    process that asks loads it and serves the others through a local socket; calls from any process and thread
    are gathered into shared batches (``BatchingBackbone``). Faces go resized to the network's input, uint8 (150 KB
    a face: the resizing is done by the asking process, not by the host), and features come back (8 KB a face).

    If the hosting process is gone (a worker restarted), the next call connects again, and the first process to
    do so loads the backbone anew.

    Args:
        config: the model config, weights local (``localise_model_config``).
        tag: names the shared backbone; equal in every process of one pipeline, unique to it.
    """

    def __init__(self, config: ModelConfig, tag: str):
        self._config = config
        self._tag = tag
        self._lock = threading.Lock()
        self._listeners: List[Callable[[float], None]] = []
        self._backbone = self._connect()

    def _connect(self):
        config = self._config
        self._shared = multi_process_shared.MultiProcessShared(lambda: _machine_backbone(config), tag=self._tag)
        return self._shared.acquire()

    def add_batch_listener(self, listener: Callable[[float], None]) -> None:
        """Calls ``listener(seconds)`` after each request, in the calling thread (the wait for a batch included)."""
        self._listeners.append(listener)

    def compute_batch_size(self) -> int:
        return self._call("compute_batch_size")

    def stats(self):
        """The shared backbone's ``BatchingBackbone.stats``."""
        return self._call("stats")

    def features(self, faces: np.ndarray) -> np.ndarray:
        """As ``BackboneRunner.features``: uint8 (N, H, W, 3) RGB -> float32 (N, 2048). The faces are resized here,
        in this process, so that the host's CPU only batches them."""
        started = time.perf_counter()
        features = self._call("features_of_resized", resize_faces(faces))
        for listener in self._listeners:
            listener(time.perf_counter() - started)
        return features

    def _call(self, method: str, *args):
        backbone = self._backbone
        try:
            return getattr(backbone, method)(*args)
        except (ConnectionError, EOFError) as error:
            LOGGER.warning("the machine's backbone (%s) is gone (%s); connecting again", self._tag, error)
            with self._lock:
                if self._backbone is backbone:
                    self._backbone = self._connect()
            return getattr(self._backbone, method)(*args)


def load_model(config: ModelConfig, backbone_tag: Optional[str] = None) -> MimamoModel:
    """Fetches remote weights into the worker's cache, loads the networks and times the backbone's passes.

    Args:
        config: the model side's settings.
        backbone_tag: None: this process loads its own backbone. Else the tag of the machine's one backbone
            (``MachineBackbone``), which this process uses, loading it if it is the first to ask.
    """
    config = localise_model_config(config)
    backbone = None if backbone_tag is None else MachineBackbone(config, backbone_tag)
    model = MimamoModel.load(config, backbone=backbone)
    model.backbone.add_batch_listener(_BackboneTimer().record)
    return model


def model_loader(sharing: str, device: str) -> Callable[[ModelConfig], MimamoModel]:
    """The loader for ``--backbone_sharing`` ``sharing`` on ``device``: ``load_model`` (a backbone per process) or
    ``load_model`` with a tag made now, so that every worker process of the pipeline built with it, and no other
    pipeline's, shares one backbone (``MachineBackbone``). Picklable."""
    if backbone_sharing_for(sharing, device) == "process":
        return load_model
    return functools.partial(load_model, backbone_tag=f"mimamo-backbone-{uuid.uuid4().hex}")


def shared_model(handle: shared.Shared, loader: Callable[[ModelConfig], MimamoModel],
                 config: ModelConfig) -> MimamoModel:
    """The process's model for ``config``: loaded once per process by ``loader`` and shared by every DoFn that asks
    with an equal config (the prediction and the work units' steps hold one copy between them)."""
    return handle.acquire(lambda: loader(config), tag=repr(config))
