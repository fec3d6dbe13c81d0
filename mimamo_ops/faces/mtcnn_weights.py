"""The MTCNN weights the ``mtcnn`` pip package ships (MIT licence, ``mtcnn/assets/weights/{pnet,rnet,onet}.lz4``)
and the input the networks were trained on. No torch: a process whose networks are already converted to OpenVINO
(``mtcnn_model.MtcnnDetector``) reads only the files' digest from here.

The ``mtcnn`` package itself runs on TensorFlow; only its weight files are used, so TensorFlow is never imported.
The files are joblib pickles of Keras weight lists; they are read with an unpickler that accepts numpy arrays and
nothing else (``read_weight_list``). The Keras port's weights take untransposed RGB images (row-major, unlike the
original MATLAB/Caffe release), normalised to (v - 127.5) / 128 (``normalise_pixels``).
"""
import hashlib
import importlib.util
import pickle
from pathlib import Path
from typing import List

import lz4.frame
import numpy as np
from joblib.numpy_pickle import NumpyUnpickler

from mimamo_ops.errors import FaceStageError

__all__ = ["PIXEL_MEAN", "PIXEL_SCALE", "WEIGHT_FILES", "locate_mtcnn_weights", "normalise_pixels",
           "read_weight_list", "weights_sha256"]

WEIGHT_FILES = ("pnet.lz4", "rnet.lz4", "onet.lz4")
_ALLOWED_GLOBALS = {("joblib.numpy_pickle", "NumpyArrayWrapper"), ("numpy", "ndarray"), ("numpy", "dtype")}
# Pixel normalisation of the trained networks: (v - 127.5) / 128.
PIXEL_MEAN = 127.5
PIXEL_SCALE = 1.0 / 128.0


def locate_mtcnn_weights() -> Path:
    """Returns the directory of the MTCNN weight files inside the installed ``mtcnn`` package.

    The package is found with ``importlib.util.find_spec`` without importing it (its ``__init__`` imports
    TensorFlow).

    Raises:
        FaceStageError: the package is not installed or lacks a weight file.
    """
    spec = importlib.util.find_spec("mtcnn")
    if spec is None or not spec.submodule_search_locations:
        raise FaceStageError("mtcnn weights: package mtcnn is not installed (pip install mtcnn)")
    for location in spec.submodule_search_locations:
        folder = Path(location) / "assets" / "weights"
        if all((folder / name).is_file() for name in WEIGHT_FILES):
            return folder
    raise FaceStageError(
        f"mtcnn weights: {list(WEIGHT_FILES)} not found under {list(spec.submodule_search_locations)}")


class _ArraysOnlyUnpickler(NumpyUnpickler):
    """joblib's unpickler, refusing every global but the numpy array wrapper (no code runs while loading)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"{self.filename}: refusing global {module}.{name} in a weight file")
        return super().find_class(module, name)


def read_weight_list(path: Path) -> List[np.ndarray]:
    """Reads one ``.lz4`` weight file: a list of float32 Keras arrays (conv kernels (kh, kw, in, out)).

    Raises:
        FaceStageError: the file cannot be read or holds anything but a list of arrays.
    """
    try:
        with lz4.frame.open(str(path), "rb") as handle:
            weights = _ArraysOnlyUnpickler(str(path), handle, ensure_native_byte_order=True).load()
    except (OSError, RuntimeError, pickle.UnpicklingError, EOFError) as error:
        raise FaceStageError(f"{path}: cannot read MTCNN weights ({error})") from error
    if not isinstance(weights, list) or not all(isinstance(w, np.ndarray) for w in weights):
        raise FaceStageError(f"{path}: expected a list of arrays, got {type(weights).__name__}")
    return weights


def weights_sha256(folder: Path) -> str:
    """SHA-256 over the three weight files, in order: the key of the networks' OpenVINO conversions."""
    digest = hashlib.sha256()
    for name in WEIGHT_FILES:
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


def normalise_pixels(images: np.ndarray) -> np.ndarray:
    """uint8 (B, H, W, 3) RGB -> the networks' float32 (B, 3, H, W) input, (v - 127.5) / 128."""
    return (np.asarray(images).transpose(0, 3, 1, 2).astype(np.float32) - PIXEL_MEAN) * PIXEL_SCALE
