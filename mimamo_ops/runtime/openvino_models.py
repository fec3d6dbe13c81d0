"""Torch networks run on OpenVINO: the default CPU runtime of the backbone and of the MTCNN face networks.

A network is converted from its strictly loaded torch module (``openvino.convert_model``, no ONNX step) and saved
as OpenVINO IR with fp32 weights (``compress_to_fp16=False``) under ``<cache>/<name>-<key>/``. The key names the
network, its weights' SHA-256, its input shape and the OpenVINO version, so new weights or a new OpenVINO build a
new entry; an entry whose ``key.json`` or files do not match is stale and rebuilt. Entries are written to a
temporary folder beside the final one and renamed into place, so concurrent workers never read a half-written
model (the loser of a race drops its copy and uses the winner's). Compiled blobs go to OpenVINO's own
``CACHE_DIR`` (``<cache>/blobs``), which makes later compiles fast.

One ``openvino.Core`` serves the whole process (``_core``): OpenVINO's CPU plugin installs an alternate signal
stack on the thread that creates its engine and hands it back when the engine goes; with one engine per model,
engines created and destroyed out of order left a freed stack installed, and the next signal (Ctrl-C) crashed the
process.

Numerics: ``INFERENCE_PRECISION_HINT`` is set explicitly: ``f32`` for fp32 (OpenVINO otherwise runs bf16 on
CPUs with AMX or AVX512_BF16, silently) and ``bf16`` for ``precision="bf16"``. The thread count is fixed when the
model is compiled, and thread pinning is off so that several worker processes can share the cores.
"""
import functools
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Tuple, Union

import numpy as np

from mimamo_ops.runtime.cache_dirs import default_cache_dir

if TYPE_CHECKING:
    from torch import nn

__all__ = ["COMPILED_CACHE_ENV", "FORMAT_VERSION", "OpenVinoModel", "cache_entry_key", "compiled_cache_root",
           "load_openvino_model", "load_or_convert"]

LOGGER = logging.getLogger(__name__)

COMPILED_CACHE_ENV = "MIMAMO_COMPILED_CACHE_DIR"  # where converted models go; default <weights cache>/compiled
FORMAT_VERSION = 2  # bump when the conversion below changes what an entry holds
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


@functools.lru_cache(maxsize=None)
def _core():
    """The process's one ``openvino.Core`` (see the module docstring)."""
    return _openvino().Core()


def compiled_cache_root(cache_dir: Optional[Union[str, os.PathLike]] = None) -> Path:
    """The folder of converted models: ``cache_dir``, else ``$MIMAMO_COMPILED_CACHE_DIR``, else
    ``<weights cache>/compiled`` (``mimamo_ops.runtime.cache_dirs.default_cache_dir``)."""
    if cache_dir is None:
        cache_dir = os.environ.get(COMPILED_CACHE_ENV) or None  # set but empty: unset
    if cache_dir is None:
        cache_dir = default_cache_dir() / "compiled"
    return Path(cache_dir)


def cache_entry_key(name: str, weights_sha256: str, input_shape: Sequence[int]) -> dict:
    """What a cache entry is built from; any difference makes an entry stale.

    Args:
        name: the network ("resnet50_ferplus", "mtcnn_onet", ...).
        weights_sha256: SHA-256 (hex) of its weights.
        input_shape: its input shape, -1 for a dynamic dimension.
    """
    return {
        "model": name,
        "weights_sha256": weights_sha256,
        "runtime": "openvino",
        "runtime_version": _openvino().get_version(),
        "input_shape": [int(d) for d in input_shape],
        "format_version": FORMAT_VERSION,
    }


def _entry_dir(cache_root: Path, key: dict) -> Path:
    version = "".join(c if c.isalnum() or c in ".-" else "_" for c in key["runtime_version"])[:40]
    return cache_root / f"{key['model']}-{key['weights_sha256'][:16]}-openvino-{version}-v{key['format_version']}"


def _entry_is_valid(entry: Path, key: dict) -> bool:
    try:
        recorded = json.loads((entry / _KEY).read_text())
        return recorded["key"] == key and (entry / _BIN).stat().st_size == recorded["bin_bytes"] and (
            entry / _XML
        ).is_file()
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _convert(model: "nn.Module", directory: Path, key: dict) -> None:
    import torch  # pylint: disable=import-outside-toplevel

    ov = _openvino()
    shape = key["input_shape"]
    # A dynamic batch traces with one item, dynamic image sides with 64 px.
    example = torch.zeros([d if d > 0 else (1 if axis == 0 else 64) for axis, d in enumerate(shape)])
    with torch.no_grad():
        converted = ov.convert_model(model, example_input=example, input=[shape])
    ov.save_model(converted, str(directory / _XML), compress_to_fp16=False)
    record = {"key": key, "bin_bytes": (directory / _BIN).stat().st_size}
    (directory / _KEY).write_text(json.dumps(record, indent=1, sort_keys=True))


def load_or_convert(build_model: Callable[[], "nn.Module"], name: str, weights_sha256: str,
                    input_shape: Sequence[int], cache_root: Path) -> Path:
    """The IR of a network from the cache, converted and cached first if absent or stale.

    Args:
        build_model: returns the eval-mode float32 network on the CPU, weights loaded strictly; called only to
            convert it (so a process that finds the entry need not import torch).
        name, weights_sha256, input_shape: the cache key (``cache_entry_key``).
        cache_root: folder of cache entries (created if missing).

    Returns:
        Path of the entry's ``model.xml``.
    """
    key = cache_entry_key(name, weights_sha256, input_shape)
    entry = _entry_dir(Path(cache_root), key)
    if _entry_is_valid(entry, key):
        return entry / _XML
    entry.parent.mkdir(parents=True, exist_ok=True)
    LOGGER.info("converting %s to OpenVINO IR in %s (once per weights and OpenVINO version)", name, entry)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        _convert(build_model(), staging, key)
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


class OpenVinoModel:
    """A network compiled for the CPU: float32 input -> its float32 outputs, in the torch module's order.

    One infer request per calling thread, so one instance serves several threads.

    Args:
        xml_path: IR from ``load_or_convert``.
        precision: "fp32" or "bf16" (``INFERENCE_PRECISION_HINT`` f32 or bf16).
        num_threads: CPU threads of the compiled model (``INFERENCE_NUM_THREADS``), >= 1.
        blob_cache_dir: OpenVINO's compiled-blob cache (``CACHE_DIR``), or None for none.
    """

    def __init__(self, xml_path: Path, precision: str, num_threads: int, blob_cache_dir: Optional[Path] = None):
        config = {
            "INFERENCE_PRECISION_HINT": _PRECISION_HINTS[precision],
            "INFERENCE_NUM_THREADS": int(num_threads),
            "NUM_STREAMS": 1,
            "PERFORMANCE_HINT": "LATENCY",
            "ENABLE_CPU_PINNING": False,
        }
        if blob_cache_dir is not None:
            config["CACHE_DIR"] = str(blob_cache_dir)
        self.num_threads = int(num_threads)
        self._compiled = _core().compile_model(str(xml_path), "CPU", config)
        self._local = threading.local()

    def __call__(self, x: np.ndarray) -> Tuple[np.ndarray, ...]:
        """x: float32 input of the converted shape -> the outputs as new float32 arrays."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        result = request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
        return tuple(np.array(value, dtype=np.float32, copy=True) for value in result.values())


def load_openvino_model(build_model: Callable[[], "nn.Module"], name: str, weights_sha256: str,
                        input_shape: Sequence[int], precision: str, num_threads: int,
                        cache_dir: Optional[Union[str, os.PathLike]] = None) -> OpenVinoModel:
    """A network compiled on OpenVINO, converted into the cache first if needed (``compiled_cache_root``); the
    arguments as ``load_or_convert``'s."""
    root = compiled_cache_root(cache_dir)
    xml_path = load_or_convert(build_model, name, weights_sha256, input_shape, root)
    return OpenVinoModel(xml_path, precision, num_threads, blob_cache_dir=root / "blobs")
