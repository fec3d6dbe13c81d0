"""Runs the ResNet-50 FER+ backbone on a device: batches, runtimes (eager torch or OpenVINO), precision, memory.

``BackboneRunner`` turns aligned face crops into the 2048-d features of spec 3.4 with the network of
``mimamo_ops.model.backbone``; ``choose_batch_size`` picks the compute batch for a device, and ``tune_allocator``
keeps glibc from returning activation buffers to the OS between forward passes.
"""
import ctypes
import ctypes.util
import hashlib
import logging
import os
import threading
import time
from typing import Callable, Dict, List, Optional, Union

import numpy as np
import torch

from mimamo_ops.model.backbone import (FEATURE_DIM, INPUT_SIZE_PX, MEAN_RGB, PRECISIONS, ResNet50FerPlus,
                                      normalise_faces, resize_faces)
from mimamo_ops.model.checkpoints import apply_state_dict, load_backbone_weights, sha256_file
from mimamo_ops.runtime.openvino_models import load_openvino_model
from mimamo_ops.runtime.selection import resolve_runtime

__all__ = ["CPU_BATCH_SIZE", "BackboneRunner", "choose_batch_size", "state_dict_sha256", "tune_allocator"]

logger = logging.getLogger(__name__)

# On a 2-core CPU, batches of 16 run within 3 % of 32 (64 is slower) with half the largest activation, so the heap
# the tuned allocator keeps is 250-375 MiB smaller and stays flat over long videos (bench/bench_backbone.py,
# bench/bench_pipeline.py).
CPU_BATCH_SIZE = 16
GPU_MIN_BATCH_SIZE = 32
GPU_BYTES_PER_FACE = 64 * 2**20  # budget per face of a ResNet-50 forward at 224x224, fp32, generous
GPU_MEMORY_SHARE = 0.5  # of the free GPU memory, leaving room for the phase stream and other processes
MAX_GPU_BATCH_SIZE = 512


def choose_batch_size(device: Union[str, torch.device], free_bytes: Optional[int] = None, processes: int = 1) -> int:
    """A backbone batch size that suits ``device`` (what ``--compute_batch_size 0`` means).

    On the CPU larger batches stop paying off early and only cost memory, so it is ``CPU_BATCH_SIZE``. On a GPU
    the batch is sized to this process's part of half of the currently free memory at ``GPU_BYTES_PER_FACE`` per
    face: each of the ``processes`` that share the GPU (they start together, so each sees the memory the others
    are about to take) gets an equal part. Between ``GPU_MIN_BATCH_SIZE`` (divided among the processes, at least
    1) and ``MAX_GPU_BATCH_SIZE``. Batch size never changes results beyond float rounding.

    Args:
        device: the device the backbone runs on.
        free_bytes: free device memory in bytes; default ``torch.cuda.mem_get_info`` for CUDA devices.
        processes: pipeline processes on this machine that share the device, >= 1.

    Returns:
        Faces per forward pass, >= 1.
    """
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    device = torch.device(device)
    if device.type != "cuda":
        return CPU_BATCH_SIZE
    if free_bytes is None:
        free_bytes, _ = torch.cuda.mem_get_info(device)
    by_memory = int(free_bytes * GPU_MEMORY_SHARE / processes) // GPU_BYTES_PER_FACE
    floor = max(1, GPU_MIN_BATCH_SIZE // processes)
    return max(floor, min(MAX_GPU_BATCH_SIZE, by_memory))


# glibc mallopt parameters (malloc.h) and the values the runner sets.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_TRIM_THRESHOLD_BYTES = 2**31 - 1  # mallopt takes an int: the largest value keeps freed memory in the heap
_allocator_lock = threading.Lock()
_allocator_tuned: Optional[bool] = None


def tune_allocator() -> bool:
    """Keeps glibc from returning big activation buffers to the OS between forward passes (once per process).

    With glibc's defaults every large activation tensor is a fresh ``mmap`` whose pages fault in again on each
    batch; a ResNet-50 forward at batch 32 loses 30-40 % of its time that way. This is the runtime form of
    ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...``: no mmap for large blocks and (nearly) no heap trimming. The
    price is that the process keeps its peak heap, and that the heap grows by one largest activation whenever
    fragmentation leaves no hole big enough for it; ``CPU_BATCH_SIZE`` keeps that activation small (49 MiB at 16
    faces) so the peak stays flat over long videos. Under another allocator (tcmalloc, jemalloc, musl) the call
    logs at DEBUG and does nothing.

    Returns:
        True if glibc accepted both settings (now or in an earlier call), False otherwise.
    """
    global _allocator_tuned
    with _allocator_lock:
        if _allocator_tuned is not None:
            return _allocator_tuned
        _allocator_tuned = _set_glibc_malloc_options()
        return _allocator_tuned


def _set_glibc_malloc_options() -> bool:
    libc_path = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(libc_path)
        libc.gnu_get_libc_version  # noqa: B018  (only glibc has it)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        logger.debug("tune_allocator: not glibc (libc %s); allocator left as is", libc_path)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES))
    logger.debug("tune_allocator: glibc mallopt(M_MMAP_MAX=0, M_TRIM_THRESHOLD=%d) -> %s", _TRIM_THRESHOLD_BYTES, ok)
    return ok


def state_dict_sha256(state_dict: Dict[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of a state_dict's keys, dtypes, shapes and values (little-endian), sorted by key."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        array = state_dict[key].detach().cpu().contiguous().numpy()
        digest.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
    return digest.hexdigest()


class BackboneRunner:
    """Holds the ResNet-50 FER+ network on a device and turns face crops into features.

    Runtimes (``runtime``): "torch" runs the eval-mode ``ResNet50FerPlus`` (channels_last, glibc allocator tuned);
    "openvino" runs the same network converted to OpenVINO IR from the strictly loaded weights
    (``mimamo_ops.runtime.openvino_models``; converted once and cached on disk by the weights' SHA-256), which on the
    CPU gives the same features (within 1e-3 of torch on values up to ~1700) faster (1.4-2.4x the img/s of
    eager torch in ``bench/bench_runtimes.py``); "auto" (default) is
    OpenVINO on the CPU and torch elsewhere. ``precision="bf16"`` changes the features by about 0.5 % of their
    range, so it is opt-in; it only pays off where the hardware has native bfloat16 (GPUs, CPUs with AVX512_BF16
    or AMX). On a CPU without it, it is slower than float32.

    Args:
        state_dict: the 320 backbone tensors (see ``mimamo_ops.model.checkpoints.load_backbone_weights``); loaded
            strictly.
        device: torch device for the model and the inputs.
        batch_size: images per forward pass (>= 1); results do not depend on it beyond float rounding.
        precision: "fp32" (default, exact) or "bf16" (torch autocast; OpenVINO's bf16 inference precision).
        channels_last: torch runtime: run convolutions in NHWC memory format (faster on CPU; same numbers up to
            rounding).
        tune_memory: call ``tune_allocator()`` (process-wide, once).
        runtime: one of ``RUNTIMES``.
        num_threads: OpenVINO's CPU threads; default ``torch.get_num_threads()`` (the process's thread budget,
            ``mimamo_ops.runtime.threads.apply_thread_budget``).
        cache_dir: folder of converted models; default ``$MIMAMO_COMPILED_CACHE_DIR``, else
            ``<weights cache>/compiled``.
        weights_sha256: SHA-256 of the weights file, the conversion cache key; default a digest of
            ``state_dict``.

    Attributes:
        runtime: the runtime in use, "torch" or "openvino".
        model: the torch network (torch runtime only; None otherwise).

    Raises:
        ValueError: a bad ``batch_size``, ``precision`` or ``runtime``.
        mimamo_ops.errors.CheckpointError: ``state_dict`` does not fit the model.
    """

    def __init__(
        self,
        state_dict: Dict[str, torch.Tensor],
        device: Union[str, torch.device] = "cpu",
        batch_size: int = CPU_BATCH_SIZE,
        precision: str = "fp32",
        channels_last: bool = True,
        tune_memory: bool = True,
        runtime: str = "auto",
        num_threads: Optional[int] = None,
        cache_dir: Optional[Union[str, os.PathLike]] = None,
        weights_sha256: Optional[str] = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1; got {batch_size}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")
        self.device = torch.device(device)
        self.runtime = resolve_runtime(runtime, self.device)
        if tune_memory:
            tune_allocator()
        self.batch_size = batch_size
        self.precision = precision
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self._batch_listeners: List[Callable[[float], None]] = []
        with torch.device("meta"):  # no random init of 23.5 M parameters only to overwrite them
            model = ResNet50FerPlus()
        apply_state_dict(model, state_dict, "<backbone state_dict>", "ResNet-50 FER+ backbone", assign=True)
        self.model: Optional[ResNet50FerPlus] = None
        self._engine = None
        if self.runtime == "openvino":
            self._engine = _load_openvino(model.eval(), weights_sha256 or state_dict_sha256(state_dict), precision,
                                          num_threads or torch.get_num_threads(), cache_dir)
        else:
            self.model = model.to(self.device, memory_format=self.memory_format).eval()
            self._mean = torch.tensor(MEAN_RGB, dtype=torch.float32, device=self.device)

    def add_batch_listener(self, listener: Callable[[float], None]) -> None:
        """Calls ``listener(seconds)`` after every forward pass (one compute batch), in the calling thread."""
        self._batch_listeners.append(listener)

    @classmethod
    def from_file(cls, path: Union[str, os.PathLike], **kwargs) -> "BackboneRunner":
        """Builds a runner from ``resnet50_ferplus_dag.pth`` (loaded with ``weights_only=True``).

        Args:
            path: the backbone weights file.
            **kwargs: passed to the constructor.

        Raises:
            mimamo_ops.errors.CheckpointError: the file is unreadable, unsafe, or not the backbone.
        """
        logger.info("loading ResNet-50 FER+ weights from %s", path)
        if kwargs.get("weights_sha256") is None:
            kwargs["weights_sha256"] = sha256_file(path)
        return cls(load_backbone_weights(path), **kwargs)

    def features_from_input(self, x: np.ndarray) -> np.ndarray:
        """Runs the network on already preprocessed input, in batches.

        Args:
            x: float32 (N, 3, 224, 224), output of ``preprocess_faces``.

        Returns:
            float32 (N, 2048) features, on the host.
        """
        return self._in_batches(x, self._forward)

    def features_from_resized(self, resized: np.ndarray) -> np.ndarray:
        """Runs the network on resized crops (``backbone.resize_faces``), in batches. The torch runtime subtracts
        the mean on the device (the float32 values ``normalise_faces`` gives, without the host's float work or a
        4x larger copy to the device); OpenVINO takes ``normalise_faces``' output.

        Args:
            resized: uint8 (N, 224, 224, 3) RGB.

        Returns:
            float32 (N, 2048) features, on the host.
        """
        return self._in_batches(resized, self._forward_resized)

    def _in_batches(self, x: np.ndarray, forward: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        """``forward`` over batches of ``batch_size`` rows of ``x``, each timed for the listeners."""
        out = np.empty((x.shape[0], FEATURE_DIM), dtype=np.float32)
        for start in range(0, x.shape[0], self.batch_size):
            batch = x[start : start + self.batch_size]
            started = time.perf_counter()
            out[start : start + batch.shape[0]] = forward(batch)
            for listener in self._batch_listeners:
                listener(time.perf_counter() - started)
        return out

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """One forward pass: float32 (n, 3, 224, 224) -> float32 (n, 2048) on the host."""
        if self._engine is not None:
            return self._engine(batch)[0].reshape(batch.shape[0], FEATURE_DIM)
        with torch.inference_mode(), self._autocast():
            tensor = torch.from_numpy(batch).to(self.device).contiguous(memory_format=self.memory_format)
            return self.model(tensor).float().cpu().numpy()

    def _forward_resized(self, batch: np.ndarray) -> np.ndarray:
        """One forward pass: uint8 (n, 224, 224, 3) -> float32 (n, 2048) on the host."""
        if self._engine is not None:
            return self._forward(normalise_faces(batch))
        with torch.inference_mode(), self._autocast():
            pixels = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
            tensor = (pixels.float() - self._mean).permute(0, 3, 1, 2)  # NHWC in memory: channels_last already
            return self.model(tensor.contiguous(memory_format=self.memory_format)).float().cpu().numpy()

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def features(self, faces: np.ndarray) -> np.ndarray:
        """Computes the MIMAMO appearance feature of each face crop (spec 3.4).

        Args:
            faces: uint8 (N, H, W, 3) RGB aligned faces (112x112 from the face stage).

        Returns:
            float32 (N, 2048) pool5 features, >= 0.
        """
        features = np.empty((len(faces), FEATURE_DIM), dtype=np.float32)
        for start in range(0, len(faces), self.batch_size):
            chunk = faces[start : start + self.batch_size]
            features[start : start + len(chunk)] = self.features_from_resized(resize_faces(chunk))
        return features


def _load_openvino(model: ResNet50FerPlus, weights_sha256: str, precision: str, num_threads: int,
                   cache_dir: Optional[Union[str, os.PathLike]]):
    """The OpenVINO engine for ``model`` (float32 (N, 3, 224, 224) -> (N, 2048, 1, 1)), converting it into the
    cache first if needed."""
    return load_openvino_model(lambda: model, "resnet50_ferplus", weights_sha256, (-1, 3, INPUT_SIZE_PX, INPUT_SIZE_PX),
                               precision, num_threads, cache_dir)
