"""Locating and loading dlib's face detector and 68-point shape predictor (both installed by pip).

The shape predictor file ships in the ``face-recognition-models`` package. Importing that package fails with
current setuptools (it imports ``pkg_resources``), so its directory is found with ``importlib.util.find_spec``
without running it.
"""
import importlib.util
import logging
from pathlib import Path
from typing import Tuple

import dlib
import numpy as np

from mimamo_ops.errors import FaceStageError

__all__ = ["LandmarkModel", "locate_packaged_model", "locate_shape_predictor", "read_mean_shape"]

logger = logging.getLogger(__name__)

SHAPE_PREDICTOR_FILE = "shape_predictor_68_face_landmarks.dat"
NUM_LANDMARKS = 68


def locate_packaged_model(file_name: str) -> Path:
    """Returns the path of one of dlib's model files inside the ``face-recognition-models`` package.

    Raises:
        FaceStageError: the package is not installed or lacks the file.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FaceStageError(
            f"{file_name}: package face-recognition-models is not installed (pip install face-recognition-models)")
    for location in spec.submodule_search_locations:
        path = Path(location) / "models" / file_name
        if path.is_file():
            return path
    raise FaceStageError(f"{file_name}: not found under {list(spec.submodule_search_locations)}")


def locate_shape_predictor() -> Path:
    """Returns the path of dlib's 68-point shape predictor (``locate_packaged_model``)."""
    return locate_packaged_model(SHAPE_PREDICTOR_FILE)


class _DlibReader:
    """Reads dlib's binary serialisation: integers are one header byte (low nibble: byte count, bit 7: sign)
    followed by the little-endian magnitude; floats are an integer mantissa then an integer exponent of 2."""

    def __init__(self, data: bytes, path: Path):
        self._data = data
        self._path = path
        self._pos = 0

    def read_int(self) -> int:
        if self._pos >= len(self._data):
            raise FaceStageError(f"{self._path}: ends inside the shape predictor header")
        header = self._data[self._pos]
        size = header & 0x0F
        start = self._pos + 1
        if size > 8 or start + size > len(self._data):
            raise FaceStageError(f"{self._path}: not a dlib shape predictor (bad integer at byte {self._pos})")
        magnitude = int.from_bytes(self._data[start:start + size], "little")
        self._pos = start + size
        return -magnitude if header & 0x80 else magnitude

    def read_float(self) -> float:
        mantissa = self.read_int()
        exponent = self.read_int()
        return float(np.ldexp(float(mantissa), exponent))


def read_mean_shape(path: Path) -> np.ndarray:
    """Reads the shape predictor's initial (mean) shape from its ``.dat`` file.

    dlib stores, in order: a format version (1), then the initial shape as a (136, 1) float matrix (its
    dimensions written negated) holding x0, y0, x1, y1, ... in the detector box's normalised frame, where
    (0, 0) is the box's top-left corner and (1, 1) its bottom-right corner. Only the first ~2 kB are read.

    Args:
        path: the ``shape_predictor_68_face_landmarks.dat`` file.

    Returns:
        float64 (68, 2) mean landmarks (x, y) in box units.

    Raises:
        FaceStageError: the file is missing or not a 68-point dlib shape predictor.
    """
    try:
        with open(path, "rb") as handle:
            data = handle.read(4096)
    except OSError as error:
        raise FaceStageError(f"{path}: cannot read the shape predictor ({error.strerror})") from error
    reader = _DlibReader(data, Path(path))
    version = reader.read_int()
    rows, cols = -reader.read_int(), -reader.read_int()
    if version != 1 or (rows, cols) != (2 * NUM_LANDMARKS, 1):
        raise FaceStageError(
            f"{path}: not a 68-point dlib shape predictor (version {version}, initial shape {rows}x{cols}, "
            f"expected version 1 and {2 * NUM_LANDMARKS}x1)")
    values = [reader.read_float() for _ in range(rows)]
    return np.asarray(values, dtype=np.float64).reshape(NUM_LANDMARKS, 2)


class LandmarkModel:
    """dlib's HOG frontal face detector plus the 68-point shape predictor, loaded once (about 1 s, 100 MB).

    Attributes:
        mean_shape: float64 (68, 2) the predictor's initial shape in box units (see ``read_mean_shape``).
    """

    def __init__(self) -> None:
        path = locate_shape_predictor()
        self.mean_shape = read_mean_shape(path)
        try:
            self._predictor = dlib.shape_predictor(str(path))
        except RuntimeError as error:
            raise FaceStageError(f"{path}: dlib cannot load the shape predictor ({error})") from error
        self._detector = dlib.get_frontal_face_detector()
        logger.debug("loaded dlib frontal face detector and %s", path)

    def detect(self, gray: np.ndarray, upsample: int, min_score: float) -> Tuple[np.ndarray, np.ndarray]:
        """Runs the HOG detector over a whole image.

        Args:
            gray: uint8 (H, W) grey image, C-contiguous.
            upsample: number of 2x upsamplings before scanning.
            min_score: detection threshold on the detector's SVM score (dlib's default is 0).

        Returns:
            boxes: float64 (K, 4) (x0, y0, x1, y1) pixels, dlib's inclusive corners; scores: float64 (K,).
        """
        rects, scores, _ = self._detector.run(gray, upsample, min_score)
        boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], dtype=np.float64)
        return boxes.reshape(-1, 4), np.asarray(scores, dtype=np.float64).reshape(-1)

    def predict(self, gray: np.ndarray, box: np.ndarray) -> np.ndarray:
        """Fits the 68 landmarks inside a face box.

        Args:
            gray: uint8 (H, W) grey image, C-contiguous.
            box: (4,) (x0, y0, x1, y1) pixels; rounded to whole pixels as dlib rectangles are integer.

        Returns:
            float32 (68, 2) landmarks (x, y), pixels.
        """
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        shape = self._predictor(gray, dlib.rectangle(x0, y0, x1, y1))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
