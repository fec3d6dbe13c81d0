"""The ResNet-50 FER+ backbone on OpenVINO: the default CPU runtime (``BackboneRunner(runtime="openvino")``).

The network is converted from the strictly loaded torch model (``openvino.convert_model``, no ONNX step) with a
dynamic batch dimension and saved as OpenVINO IR with fp32 weights (``compress_to_fp16=False``) under
``<cache>/compiled/<key>/``. The key names the weights' SHA-256 and the OpenVINO version, so new weights or a new
OpenVINO build a new entry; an entry whose ``key.json`` or files do not match is stale and rebuilt. Entries are
written to a temporary folder beside the final one and renamed into place, so concurrent workers never read a
half-written model (the loser of a race drops its copy and uses the winner's). Compiled blobs go to OpenVINO's
own ``CACHE_DIR`` beside them, which makes later compiles fast.

Numerics: ``INFERENCE_PRECISION_HINT`` is set explicitly: ``f32`` for fp32 (OpenVINO otherwise runs bf16 on
CPUs with AMX or AVX512_BF16, silently) and ``bf16`` for ``precision="bf16"``. The thread count is fixed when the
model is compiled, and thread pinning is off so that several worker processes can share the cores.
"""
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

__all__ = ["FORMAT_VERSION", "OpenVinoBackbone", "cache_entry_key", "load_or_convert"]

LOGGER = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the conversion below changes what an entry holds
_INPUT_SHAPE = (-1, 3, 224, 224)  # dynamic batch; the backbone's fixed input (backbone.INPUT_SIZE_PX)
_XML, _BIN, _KEY = "model.xml", "model.bin", "key.json"
_PRECISION_HINTS = {"fp32": "f32", "bf16": "bf16"}


def _openvino():
    """Imports ``openvino`` with its usage reporting off: with ``openvino-telemetry`` importable (a dependency of
    the ``openvino`` wheel) ``convert_model`` sends usage events to Google Analytics and writes a client id under
    ``~/intel``; when that import fails OpenVINO falls back to its own no-op stub, so the import is made to fail."""
    if "openvino_telemetry" not in sys.modules:
        sys.modules["openvino_telemetry"] = None  # ``import openvino_telemetry`` now raises ImportError
    import openvino  # pylint: disable=import-outside-toplevel

    return openvino


def _openvino_version() -> str:
    ov = _openvino()

    return ov.get_version()


def cache_entry_key(weights_sha256: str) -> dict:
    """What a cache entry is built from; any difference makes an entry stale.

    Args:
        weights_sha256: SHA-256 (hex) of the backbone weights.
    """
    return {
        "weights_sha256": weights_sha256,
        "runtime": "openvino",
        "runtime_version": _openvino_version(),
        "input_shape": list(_INPUT_SHAPE),
        "format_version": FORMAT_VERSION,
    }


def _entry_dir(cache_root: Path, key: dict) -> Path:
    version = "".join(c if c.isalnum() or c in ".-" else "_" for c in key["runtime_version"])[:40]
    return cache_root / f"resnet50_ferplus-{key['weights_sha256'][:16]}-openvino-{version}-v{key['format_version']}"


def _entry_is_valid(entry: Path, key: dict) -> bool:
    try:
        recorded = json.loads((entry / _KEY).read_text())
        return recorded["key"] == key and (entry / _BIN).stat().st_size == recorded["bin_bytes"] and (
            entry / _XML
        ).is_file()
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _convert(model: nn.Module, directory: Path, key: dict) -> None:
    ov = _openvino()

    example = torch.zeros((1,) + _INPUT_SHAPE[1:], dtype=torch.float32)
    with torch.no_grad():
        converted = ov.convert_model(model, example_input=example, input=[_INPUT_SHAPE])
    ov.save_model(converted, str(directory / _XML), compress_to_fp16=False)
    record = {"key": key, "bin_bytes": (directory / _BIN).stat().st_size}
    (directory / _KEY).write_text(json.dumps(record, indent=1, sort_keys=True))


def load_or_convert(model: nn.Module, weights_sha256: str, cache_root: Path) -> Path:
    """The IR of ``model`` from the cache, converted and cached first if absent or stale.

    Args:
        model: eval-mode float32 ``ResNet50FerPlus`` on the CPU, weights loaded strictly.
        weights_sha256: SHA-256 of those weights (the cache key).
        cache_root: folder of cache entries (created if missing).

    Returns:
        Path of the entry's ``model.xml``.
    """
    key = cache_entry_key(weights_sha256)
    entry = _entry_dir(Path(cache_root), key)
    if _entry_is_valid(entry, key):
        return entry / _XML
    entry.parent.mkdir(parents=True, exist_ok=True)
    LOGGER.info("converting the backbone to OpenVINO IR in %s (once per weights and OpenVINO version)", entry)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        _convert(model, staging, key)
        if entry.exists() and not _entry_is_valid(entry, key):
            shutil.rmtree(entry, ignore_errors=True)  # stale or half-deleted: replace it
        try:
            os.rename(staging, entry)
        except OSError:  # another process renamed its valid copy into place first
            if not _entry_is_valid(entry, key):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return entry / _XML


class OpenVinoBackbone:
    """A compiled OpenVINO backbone: float32 (N, 3, 224, 224) input -> float32 (N, 2048) features.

    One infer request per calling thread, so one instance serves several threads.

    Args:
        xml_path: IR from ``load_or_convert``.
        precision: "fp32" or "bf16" (``INFERENCE_PRECISION_HINT`` f32 or bf16).
        num_threads: CPU threads of the compiled model (``INFERENCE_NUM_THREADS``), >= 1.
        blob_cache_dir: OpenVINO's compiled-blob cache (``CACHE_DIR``), or None for none.
    """

    def __init__(self, xml_path: Path, precision: str, num_threads: int, blob_cache_dir: Optional[Path] = None):
        ov = _openvino()

        core = ov.Core()
        if blob_cache_dir is not None:
            core.set_property({"CACHE_DIR": str(blob_cache_dir)})
        config = {
            "INFERENCE_PRECISION_HINT": _PRECISION_HINTS[precision],
            "INFERENCE_NUM_THREADS": int(num_threads),
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "ENABLE_CPU_PINNING": False,
        }
        self.num_threads = int(num_threads)
        self._compiled = core.compile_model(str(xml_path), "CPU", config)
        self._local = threading.local()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """x: float32 (N, 3, 224, 224), C-contiguous -> float32 (N, 2048), a new array."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        result = request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return np.array(next(iter(result.values())), dtype=np.float32, copy=True).reshape(x.shape[0], -1)
