"""One backbone fed by many callers at once: the tracks of a video, the videos in flight, and (through a proxy,
``beam_pipeline.model_loading``) every worker process of a machine.

``BatchingBackbone`` wraps a ``BackboneRunner``. A caller, in any thread, hands it face crops and waits; the
crops are resized in the caller's thread (or by the caller's process, ``features_of_resized``), then one compute
thread gathers whatever is waiting into forward passes of up to the runner's batch size, the faces of different
callers side by side, and hands each caller its rows. So one model on a GPU serves the whole machine with full
batches, instead of one model per process each filling batches from one track.

In eval mode the network computes each face's feature from that face alone, so the numbers do not depend on
which faces share a batch (``tests/ops/test_backbone_batching.py`` measures it, on the features and on the
predictions).
"""
import collections
import dataclasses
import os
import threading
import time
from typing import Deque, Dict, List, Optional, Tuple

import numpy as np

from mimamo_ops.model.backbone import FEATURE_DIM, resize_faces
from mimamo_ops.model.backbone_runner import BackboneRunner

__all__ = ["GATHER_WAIT_S", "BatchingBackbone"]

# How long an idle compute thread waits, after the first request, for others to fill the batch. Requests that
# arrive while a batch computes are gathered without waiting; this only delays a lone request, by far less than
# one forward pass takes (tens of milliseconds on a GPU, hundreds on a CPU).
GATHER_WAIT_S = 0.005


@dataclasses.dataclass
class _Request:
    """One caller's faces: resized input, the features as they are filled, and how far each got."""

    inputs: np.ndarray  # uint8 (n, 224, 224, 3), resized (backbone.resize_faces)
    features: np.ndarray  # float32 (n, 2048)
    taken: int = 0  # rows handed to a batch
    computed: int = 0  # rows whose features are in
    error: Optional[BaseException] = None
    done: threading.Event = dataclasses.field(default_factory=threading.Event)

    @property
    def size(self) -> int:
        return int(self.inputs.shape[0])


class BatchingBackbone:
    """A ``BackboneRunner`` that many threads share, with their faces gathered into common batches.

    Args:
        runner: the network; its ``batch_size`` is the most faces per forward pass.
        gather_wait_s: how long the idle compute thread waits after a first request for more faces.

    ``features`` has ``BackboneRunner.features``' contract, so a ``MimamoModel`` can use either.
    """

    def __init__(self, runner: BackboneRunner, gather_wait_s: float = GATHER_WAIT_S):
        if gather_wait_s < 0:
            raise ValueError(f"gather_wait_s must be >= 0, got {gather_wait_s}")
        self._runner = runner
        self._gather_wait_s = gather_wait_s
        self._queue: Deque[_Request] = collections.deque()
        self._queued_faces = 0
        self._condition = threading.Condition()
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self._counts = {"batches": 0, "faces": 0, "shared_batches": 0}

    def compute_batch_size(self) -> int:
        """Most faces per forward pass (a method, so that a process holding a proxy can ask)."""
        return self._runner.batch_size

    def stats(self) -> Dict[str, int]:
        """``batches`` run, ``faces`` computed, ``shared_batches`` (batches holding faces of more than one request),
        and ``pid``, the process that holds the network."""
        with self._condition:
            return dict(self._counts, pid=os.getpid())

    def add_batch_listener(self, listener) -> None:
        """As ``BackboneRunner.add_batch_listener``: ``listener(seconds)`` after each forward pass, in the compute
        thread."""
        self._runner.add_batch_listener(listener)

    def features(self, faces: np.ndarray) -> np.ndarray:
        """The backbone features of ``faces``, computed in batches shared with other callers; the faces are
        resized in the caller's thread.

        Args:
            faces: uint8 (N, H, W, 3) RGB aligned faces.

        Returns:
            float32 (N, 2048), as ``BackboneRunner.features``.

        Raises:
            RuntimeError: the batcher was closed.
            Whatever the forward pass of a batch holding these faces raised.
        """
        return self.features_of_resized(resize_faces(faces))

    def features_of_resized(self, resized: np.ndarray) -> np.ndarray:
        """As ``features``, for faces a caller resized already (``backbone.resize_faces``: uint8 (N, 224, 224, 3)),
        so that a process sharing this backbone through a proxy does that work itself."""
        request = _Request(np.asarray(resized), np.empty((len(resized), FEATURE_DIM), dtype=np.float32))
        if not request.size:
            return request.features
        with self._condition:
            if self._closed:
                raise RuntimeError("BatchingBackbone is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._compute_loop, name="backbone-batches", daemon=True)
                self._thread.start()
            self._queue.append(request)
            self._queued_faces += request.size
            self._condition.notify_all()
        request.done.wait()
        if request.error is not None:
            raise request.error
        return request.features

    def close(self) -> None:
        """Computes what is queued, then stops the compute thread."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _compute_loop(self) -> None:
        while True:
            with self._condition:
                while not self._queue and not self._closed:
                    self._condition.wait()
                if not self._queue:
                    return
                self._wait_for_a_full_batch()
                pieces = self._take_batch()
            self._compute(pieces)

    def _wait_for_a_full_batch(self) -> None:
        """Holds the lock; returns when a batch's worth of faces waits, or ``gather_wait_s`` has passed."""
        deadline = time.monotonic() + self._gather_wait_s
        while self._queued_faces < self._runner.batch_size and not self._closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._condition.wait(remaining)

    def _take_batch(self) -> List[Tuple[_Request, int, int]]:
        """Holds the lock; takes up to one batch of faces from the front of the queue as (request, start, stop)."""
        pieces = []
        room = self._runner.batch_size
        while self._queue and room:
            request = self._queue[0]
            start = request.taken
            stop = min(request.size, start + room)
            pieces.append((request, start, stop))
            request.taken = stop
            room -= stop - start
            self._queued_faces -= stop - start
            if stop == request.size:
                self._queue.popleft()
        return pieces

    def _compute(self, pieces: List[Tuple[_Request, int, int]]) -> None:
        live = [(request, start, stop) for request, start, stop in pieces if request.error is None]
        try:
            if live:
                inputs = np.concatenate([request.inputs[start:stop] for request, start, stop in live])
                features = self._runner.features_from_resized(inputs)
        except BaseException as error:  # every caller of the batch gets it; none waits for ever
            for request, _, _ in live:
                request.error = error
                request.done.set()
            if not isinstance(error, Exception):
                raise
            return
        row = 0
        for request, start, stop in live:
            request.features[start:stop] = features[row:row + stop - start]
            row += stop - start
            request.computed += stop - start
            if request.computed == request.size:
                request.done.set()
        with self._condition:
            self._counts["batches"] += 1
            self._counts["faces"] += row
            self._counts["shared_batches"] += len({id(request) for request, _, _ in live}) > 1
