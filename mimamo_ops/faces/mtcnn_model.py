"""MTCNN face detector (Zhang et al. 2016, the detector family of OpenFace 2), in PyTorch, with the weights the
``mtcnn`` pip package ships (MIT licence, ``mtcnn/assets/weights/{pnet,rnet,onet}.lz4``).

The ``mtcnn`` package itself runs on TensorFlow; only its weight files are used here, so TensorFlow is never
imported. The files are joblib pickles of Keras weight lists; they are read with an unpickler that accepts numpy
arrays and nothing else (``read_weight_list``), and copied into three small networks:

* P-Net, fully convolutional over an image pyramid: proposals every 2 px at a 12-px window per scale;
* R-Net on 24x24 crops: rejects and refines proposals;
* O-Net on 48x48 crops: final score, box refinement and five landmarks (eye centres, nose tip, mouth corners).

The Keras port's weights take untransposed images (row-major, unlike the original MATLAB/Caffe release), RGB,
normalised to (v - 127.5) / 128; box offsets are fractions of the box's width and height; landmarks are five x
then five y, as box fractions.
Everything runs on the device the detector is built for (CPU, or a GPU where there is one). On a CPU the
networks run on OpenVINO by default (``MtcnnDetector(runtime=...)``), one thread each, or in eager PyTorch in one
worker thread of their own with one intra-op thread: they are too small to gain from parallel convolutions, and on
a busy machine (the pipeline's backbone runs beside the face stage) two OpenMP threads per convolution ran them 3
to 30 times slower (``bench/bench_faces.py``). With PyTorch's OpenMP backend the setting applies to that thread
only. Either way their rounding does not depend on the worker's thread budget.
"""
import concurrent.futures
import ctypes
import hashlib
import importlib.util
import logging
import pickle
from pathlib import Path
from typing import List, Sequence, Tuple

import cv2
import lz4.frame
import numpy as np
import torch
from joblib.numpy_pickle import NumpyUnpickler
from torch import nn

from mimamo_ops.errors import FaceStageError
from mimamo_ops.runtime.selection import resolve_runtime

__all__ = ["MtcnnDetector", "Detections", "locate_mtcnn_weights", "read_weight_list", "square_boxes"]

logger = logging.getLogger(__name__)

_WEIGHT_FILES = ("pnet.lz4", "rnet.lz4", "onet.lz4")
_ALLOWED_GLOBALS = {("joblib.numpy_pickle", "NumpyArrayWrapper"), ("numpy", "ndarray"), ("numpy", "dtype")}
# Pixel normalisation of the trained networks: (v - 127.5) / 128.
_PIXEL_MEAN = 127.5
_PIXEL_SCALE = 1.0 / 128.0
_PNET_CELL_PX = 12
_PNET_STRIDE_PX = 2
_PYRAMID_FACTOR = 0.709


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
        if all((folder / name).is_file() for name in _WEIGHT_FILES):
            return folder
    raise FaceStageError(
        f"mtcnn weights: {list(_WEIGHT_FILES)} not found under {list(spec.submodule_search_locations)}")


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


def _conv(weights: List[np.ndarray], out_channels: int) -> nn.Conv2d:
    kernel, bias = weights.pop(0), weights.pop(0)
    layer = nn.Conv2d(kernel.shape[2], out_channels, kernel.shape[:2])
    if kernel.shape[3] != out_channels:
        raise FaceStageError(f"MTCNN weights: conv kernel {kernel.shape}, expected {out_channels} outputs")
    layer.weight.data = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
    layer.bias.data = torch.from_numpy(bias)
    return layer


def _prelu(weights: List[np.ndarray]) -> nn.PReLU:
    alpha = weights.pop(0).reshape(-1)
    layer = nn.PReLU(alpha.size)
    layer.weight.data = torch.from_numpy(np.ascontiguousarray(alpha))
    return layer


def _dense(weights: List[np.ndarray]) -> nn.Linear:
    kernel, bias = weights.pop(0), weights.pop(0)
    layer = nn.Linear(*kernel.shape)
    layer.weight.data = torch.from_numpy(np.ascontiguousarray(kernel.T))
    layer.bias.data = torch.from_numpy(bias)
    return layer


class _PNet(nn.Module):
    """Proposal network: float32 (B, 3, H, W) -> box offsets (B, 4, h, w), face probability (B, h, w)."""

    def __init__(self, weights: List[np.ndarray]):
        super().__init__()
        weights = list(weights)
        self.body = nn.Sequential(
            _conv(weights, 10), _prelu(weights), nn.MaxPool2d(2, 2, ceil_mode=True),
            _conv(weights, 16), _prelu(weights), _conv(weights, 32), _prelu(weights))
        self.box = _conv(weights, 4)
        self.score = _conv(weights, 2)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        x = self.body(x)
        return self.box(x), torch.softmax(self.score(x), dim=1)[:, 1]


class _RNet(nn.Module):
    """Refinement network: float32 (B, 3, 24, 24) -> box offsets (B, 4), face probability (B,)."""

    def __init__(self, weights: List[np.ndarray]):
        super().__init__()
        weights = list(weights)
        self.body = nn.Sequential(
            _conv(weights, 28), _prelu(weights), nn.MaxPool2d(3, 2, ceil_mode=True),
            _conv(weights, 48), _prelu(weights), nn.MaxPool2d(3, 2),
            _conv(weights, 64), _prelu(weights))
        self.fc = nn.Sequential(_dense(weights), _prelu(weights))
        self.box = _dense(weights)
        self.score = _dense(weights)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        # Keras flattens channels-last after swapping its two spatial axes: (B, C, H, W) -> (B, W, H, C).
        x = self.fc(self.body(x).permute(0, 3, 2, 1).flatten(1))
        return self.box(x), torch.softmax(self.score(x), dim=1)[:, 1]


class _ONet(nn.Module):
    """Output network: float32 (B, 3, 48, 48) -> box offsets (B, 4), landmarks (B, 10), face probability (B,)."""

    def __init__(self, weights: List[np.ndarray]):
        super().__init__()
        weights = list(weights)
        self.body = nn.Sequential(
            _conv(weights, 32), _prelu(weights), nn.MaxPool2d(3, 2, ceil_mode=True),
            _conv(weights, 64), _prelu(weights), nn.MaxPool2d(3, 2),
            _conv(weights, 64), _prelu(weights), nn.MaxPool2d(2, 2, ceil_mode=True),
            _conv(weights, 128), _prelu(weights))
        self.fc = nn.Sequential(_dense(weights), _prelu(weights))
        self.box = _dense(weights)
        self.points = _dense(weights)
        self.score = _dense(weights)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.fc(self.body(x).permute(0, 3, 2, 1).flatten(1))
        return self.box(x), self.points(x), torch.softmax(self.score(x), dim=1)[:, 1]


class Detections:
    """Faces found in one image.

    Attributes:
        boxes: float64 (K, 4) (x0, y0, x1, y1) pixels, origin top-left.
        scores: float64 (K,) O-Net face probability in [0, 1].
        points: float64 (K, 5, 2) (x, y) pixels, in order: the eye at smaller x (for an upright frontal face),
            the other eye, the nose tip, the mouth corner at smaller x, the other mouth corner.
    """

    def __init__(self, boxes: np.ndarray, scores: np.ndarray, points: np.ndarray):
        self.boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        self.scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        self.points = np.asarray(points, dtype=np.float64).reshape(-1, 5, 2)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def select(self, keep: np.ndarray) -> "Detections":
        return Detections(self.boxes[keep], self.scores[keep], self.points[keep])


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, by_min: bool = False) -> np.ndarray:
    """Greedy non-maximum suppression; returns the kept indices, best first. ``by_min`` divides the overlap
    by the smaller box's area instead of the union (suppresses boxes nested inside a better one)."""
    order = np.argsort(-scores)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        width = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None)
        height = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None)
        inter = width * height
        denominator = np.minimum(area[i], area[rest]) if by_min else area[i] + area[rest] - inter
        order = rest[inter / np.maximum(denominator, 1e-9) <= threshold]
    return np.asarray(keep, dtype=np.int64)


def square_boxes(boxes: np.ndarray) -> np.ndarray:
    """Squares boxes around their centres, side = the longer side."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = np.max(boxes[:, 2:] - boxes[:, :2], axis=1, keepdims=True) / 2
    return np.hstack([centre - half, centre + half])


def _refine(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Moves each box's corners by its regression offsets (fractions of its width and height)."""
    size = np.tile(boxes[:, 2:] - boxes[:, :2], 2)
    return boxes + offsets * size


def _use_one_thread_here() -> None:
    """Limits the calling thread to one OpenMP and one MKL thread, leaving the other threads' settings alone.

    ``torch.set_num_threads`` would also set MKL's process-wide count, which changes the rounding of the
    backbone running in other threads; the thread-local OpenMP and MKL calls that PyTorch's CPU library exports
    are used instead, and ``torch.set_num_threads`` only when a build lacks them. PyTorch sets a thread's
    OpenMP count to the process-wide ``torch.set_num_threads`` value on its first parallel call in that thread,
    so that first call (``torch.get_num_threads``) is made here before the count is set: otherwise the networks
    would run on as many threads as the process was given, and their rounding (so the landmarks, and so the
    predictions) would depend on the worker's thread budget.
    """
    torch.get_num_threads()
    try:
        library = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
        omp_set_num_threads = library.omp_set_num_threads
        mkl_set_num_threads_local = library.MKL_Set_Num_Threads_Local
    except (OSError, AttributeError):
        torch.set_num_threads(1)
        return
    omp_set_num_threads(1)
    mkl_set_num_threads_local(1)


class _OpenVinoNet:
    """A network compiled on OpenVINO, called like the torch module: float32 tensor in, tensors out."""

    def __init__(self, model: nn.Module, name: str, weights_sha256: str, input_shape: Tuple[int, ...]):
        from mimamo_ops.runtime.openvino_models import load_openvino_model  # pylint: disable=import-outside-toplevel

        self._compiled = load_openvino_model(model, name, weights_sha256, input_shape, "fp32", 1)

    def __call__(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return tuple(torch.from_numpy(output) for output in self._compiled(x.numpy()))


def _weights_sha256(folder: Path) -> str:
    """SHA-256 over the three weight files, in order: the key of the networks' OpenVINO conversions."""
    digest = hashlib.sha256()
    for name in _WEIGHT_FILES:
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


class MtcnnDetector:
    """The three MTCNN networks, loaded once (about 0.1 s, 2 MB), on one device.

    Runtimes (``runtime``, as the backbone's, ``mimamo_ops.runtime.selection``): on the CPU, "auto" runs the networks on
    OpenVINO with one thread each (converted once and cached like the backbone, ``mimamo_ops.runtime.openvino_models``;
    O-Net, the per-frame check, 1.5 ms against 3 ms in eager torch in ``bench/bench_faces.py``; detections
    within 0.01 px of torch's, ``tests/ops/test_faces_detection.py``); "torch" runs them
    in eager PyTorch in one worker thread of their own (see the module docstring). On a GPU, torch.

    Args:
        device: torch device string ("cpu", "cuda", "cuda:1").
        min_face_px: smallest face side searched for in the full-image detector, pixels.
        thresholds: least face probability to pass P-Net, R-Net and O-Net.
        runtime: one of ``mimamo_ops.runtime.selection.RUNTIMES``.

    Raises:
        FaceStageError: the weights cannot be found or read.
        ValueError: an unknown runtime, or OpenVINO asked for off the CPU or without the package.
    """

    def __init__(self, device: str = "cpu", min_face_px: float = 20.0,
                 thresholds: Sequence[float] = (0.6, 0.7, 0.7), runtime: str = "auto"):
        folder = locate_mtcnn_weights()
        self.device = torch.device(device)
        self.runtime = resolve_runtime(runtime, self.device)
        self.min_face_px = float(min_face_px)
        self.thresholds = tuple(float(t) for t in thresholds)
        self._pnet = _PNet(read_weight_list(folder / "pnet.lz4")).to(self.device).eval()
        self._rnet = _RNet(read_weight_list(folder / "rnet.lz4")).to(self.device).eval()
        self._onet = _ONet(read_weight_list(folder / "onet.lz4")).to(self.device).eval()
        self._worker = None
        if self.runtime == "openvino":
            sha256 = _weights_sha256(folder)
            self._pnet = _OpenVinoNet(self._pnet, "mtcnn_pnet", sha256, (1, 3, -1, -1))
            self._rnet = _OpenVinoNet(self._rnet, "mtcnn_rnet", sha256, (-1, 3, 24, 24))
            self._onet = _OpenVinoNet(self._onet, "mtcnn_onet", sha256, (-1, 3, 48, 48))
        elif self.device.type == "cpu":
            self._worker = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="mtcnn", initializer=_use_one_thread_here)
        logger.debug("loaded MTCNN from %s on %s (%s)", folder, self.device, self.runtime)

    def _call(self, function, *args):
        """Runs ``function(*args)`` in the CPU worker thread of the torch runtime (see the module docstring), or
        here (OpenVINO, whose networks have one thread of their own, or a GPU)."""
        if self._worker is None:
            return function(*args)
        return self._worker.submit(function, *args).result()

    def _to_tensor(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, 3) RGB -> normalised float32 (B, 3, H, W) on the device.

        On the CPU in numpy (the same float32 operations; a quarter of the time of torch's small-tensor calls
        for O-Net's per-frame check), on a GPU there (the uint8 frame is what crosses the bus).
        """
        if self.device.type == "cpu":
            batch = (np.asarray(images).transpose(0, 3, 1, 2).astype(np.float32) - _PIXEL_MEAN) * _PIXEL_SCALE
            return torch.from_numpy(batch)
        batch = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        return (batch.permute(0, 3, 1, 2).float() - _PIXEL_MEAN) * _PIXEL_SCALE

    def detect(self, rgb: np.ndarray) -> Detections:
        """Finds every face of at least ``min_face_px`` in an image.

        Args:
            rgb: uint8 (H, W, 3) RGB image.

        Returns:
            The faces, best score first.
        """
        return self._call(self._detect, rgb)

    @torch.no_grad()
    def _detect(self, rgb: np.ndarray) -> Detections:
        boxes = self._propose(rgb)
        if len(boxes):
            boxes = self._run_rnet(rgb, boxes)
        if len(boxes) == 0:
            return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))
        found = self._score_boxes(rgb, boxes)
        found = found.select(found.scores >= self.thresholds[2])
        return found.select(_nms(found.boxes, found.scores, 0.7, by_min=True))

    def _propose(self, rgb: np.ndarray) -> np.ndarray:
        height, width = rgb.shape[:2]
        scale = _PNET_CELL_PX / self.min_face_px
        proposals, scores = [], []
        while min(height, width) * scale >= _PNET_CELL_PX:
            size = (max(int(np.ceil(width * scale)), _PNET_CELL_PX), max(int(np.ceil(height * scale)), _PNET_CELL_PX))
            level = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            offsets, probability = self._pnet(self._to_tensor(level[None]))
            probability = probability[0].cpu().numpy()
            offsets = offsets[0].cpu().numpy()
            ys, xs = np.nonzero(probability >= self.thresholds[0])
            if xs.size:
                cells = np.stack([xs, ys, xs, ys], axis=1) * _PNET_STRIDE_PX + np.array([0, 0, 1, 1]) * _PNET_CELL_PX
                cells = cells / scale
                delta = offsets[:, ys, xs].T
                level_scores = probability[ys, xs]
                keep = _nms(cells, level_scores, 0.5)
                proposals.append(_refine(cells[keep], delta[keep]))
                scores.append(level_scores[keep])
            scale *= _PYRAMID_FACTOR
        if not proposals:
            return np.zeros((0, 4))
        boxes, box_scores = np.concatenate(proposals), np.concatenate(scores)
        return square_boxes(boxes[_nms(boxes, box_scores, 0.7)])

    def _crops(self, rgb: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
        """Resamples each box (zero outside the image) to a uint8 (K, size, size, 3) crop."""
        crops = np.empty((len(boxes), size, size, 3), dtype=np.uint8)
        for k, (x0, y0, x1, y1) in enumerate(boxes):
            scale_x, scale_y = size / max(x1 - x0, 1e-6), size / max(y1 - y0, 1e-6)
            matrix = np.array([[scale_x, 0.0, -x0 * scale_x], [0.0, scale_y, -y0 * scale_y]])
            flags = cv2.INTER_AREA if scale_x < 1 else cv2.INTER_LINEAR
            crops[k] = cv2.warpAffine(rgb, matrix, (size, size), flags=flags, borderMode=cv2.BORDER_CONSTANT,
                                      borderValue=0)
        return crops

    @torch.no_grad()
    def _run_rnet(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        offsets, probability = self._rnet(self._to_tensor(self._crops(rgb, boxes, 24)))
        probability = probability.cpu().numpy()
        keep = probability >= self.thresholds[1]
        boxes, probability = boxes[keep], probability[keep]
        delta = offsets.cpu().numpy()[keep]
        order = _nms(boxes, probability, 0.7)
        return square_boxes(_refine(boxes[order], delta[order]))

    def run_onet(self, crops: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Runs O-Net on 48x48 crops (about 1 ms per crop on a CPU; the tracker's per-frame check).

        Args:
            crops: uint8 (K, 48, 48, 3) RGB.

        Returns:
            offsets: float64 (K, 4) corner moves (x0, y0, x1, y1) as fractions of the crop side;
            points: float64 (K, 5, 2) landmarks (x, y) as fractions of the crop side (order as ``Detections``);
            probability: float64 (K,) face probability.
        """
        return self._call(self._run_onet, crops)

    @torch.no_grad()
    def _run_onet(self, crops: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        offsets, points, probability = (output.cpu().numpy().astype(np.float64)
                                        for output in self._onet(self._to_tensor(crops)))
        return offsets, np.stack([points[:, :5], points[:, 5:]], axis=2), probability

    def score_boxes(self, rgb: np.ndarray, boxes: np.ndarray) -> Detections:
        """Runs O-Net on given boxes: refined boxes, face probabilities and five landmarks.

        Args:
            rgb: uint8 (H, W, 3) RGB image.
            boxes: float (K, 4) (x0, y0, x1, y1) pixels, ideally square.

        Returns:
            K detections in the order of ``boxes`` (none filtered).
        """
        return self._call(self._score_boxes, rgb, boxes)

    @torch.no_grad()
    def _score_boxes(self, rgb: np.ndarray, boxes: np.ndarray) -> Detections:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))
        offsets, points, probability = self._run_onet(self._crops(rgb, boxes, 48))
        size = (boxes[:, 2:] - boxes[:, :2])[:, None, :]
        return Detections(_refine(boxes, offsets), probability, boxes[:, None, :2] + points * size)
