"""MTCNN face detector (Zhang et al. 2016, the detector family of OpenFace 2), with the weights the ``mtcnn`` pip
package ships (``mtcnn_weights``) in three small networks (``mtcnn_networks``): P-Net proposes boxes over an image
pyramid, R-Net rejects and refines them on 24x24 crops, O-Net scores them on 48x48 crops and gives five landmarks.

Box offsets are fractions of the box's width and height; landmarks are five x then five y, as box fractions.
Everything runs on the device the detector is built for (CPU, or a GPU where there is one). On a CPU the
networks run on OpenVINO by default (``MtcnnDetector(runtime=...)``), one thread each, or in eager PyTorch in one
worker thread of their own with one intra-op thread: they are too small to gain from parallel convolutions, and on
a busy machine (the pipeline's backbone runs beside the face stage) two OpenMP threads per convolution ran them 3
to 30 times slower (``bench/bench_faces.py``). With PyTorch's OpenMP backend the setting applies to that thread
only. Either way their rounding does not depend on the worker's thread budget.

On OpenVINO with the converted networks in the cache (``mimamo_ops.runtime.openvino_models``), this module and
the detector never import torch: the face stage's process starts without it (about 2 s of imports on a 2-core
machine, measured in ``docs/performance.md``). torch is imported to convert the networks once, or to run them.
"""
import concurrent.futures
import logging
from pathlib import Path
from typing import Sequence, Tuple

import cv2
import numpy as np

from mimamo_ops.faces.mtcnn_weights import locate_mtcnn_weights, normalise_pixels, read_weight_list, weights_sha256
from mimamo_ops.runtime.selection import resolve_runtime

__all__ = ["MtcnnDetector", "Detections", "locate_mtcnn_weights", "read_weight_list", "square_boxes"]

logger = logging.getLogger(__name__)

_PNET_CELL_PX = 12
_PNET_STRIDE_PX = 2
_PYRAMID_FACTOR = 0.709
# each network (its weight file is <name>.lz4) and the input shape of its OpenVINO conversion (-1: any size)
_NETWORKS = (("pnet", (1, 3, -1, -1)), ("rnet", (-1, 3, 24, 24)), ("onet", (-1, 3, 48, 48)))


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


class _OpenVinoNet:
    """A network compiled on OpenVINO: uint8 (B, H, W, 3) RGB images -> its float32 outputs."""

    def __init__(self, kind: str, folder: Path, sha256: str, input_shape: Tuple[int, ...]):
        from mimamo_ops.runtime.openvino_models import load_openvino_model  # pylint: disable=import-outside-toplevel

        self._compiled = load_openvino_model(lambda: _torch_module(kind, folder), f"mtcnn_{kind}",
                                             sha256, input_shape, "fp32", 1)

    def __call__(self, images: np.ndarray) -> Tuple[np.ndarray, ...]:
        return self._compiled(normalise_pixels(images))


def _torch_module(kind: str, folder: Path):
    """The eval-mode torch module of network ``kind`` ("pnet", "rnet", "onet"), filled from its weight file."""
    from mimamo_ops.faces.mtcnn_networks import NETWORKS  # pylint: disable=import-outside-toplevel

    return NETWORKS[kind](read_weight_list(folder / f"{kind}.lz4")).eval()


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
        self.device = str(device)
        self.runtime = resolve_runtime(runtime, self.device)
        self.min_face_px = float(min_face_px)
        self.thresholds = tuple(float(t) for t in thresholds)
        self._worker = None
        if self.runtime == "openvino":
            sha256 = weights_sha256(folder)  # the key of all three conversions: the files are read once
            networks = [_OpenVinoNet(kind, folder, sha256, shape) for kind, shape in _NETWORKS]
        else:
            # pylint: disable-next=import-outside-toplevel
            from mimamo_ops.faces.mtcnn_networks import TorchNet, use_one_thread_here

            networks = [TorchNet(_torch_module(kind, folder), self.device) for kind, _ in _NETWORKS]
            if self.device.split(":", 1)[0] == "cpu":
                self._worker = concurrent.futures.ThreadPoolExecutor(
                    1, thread_name_prefix="mtcnn", initializer=use_one_thread_here)
        self._pnet, self._rnet, self._onet = networks
        logger.debug("loaded MTCNN from %s on %s (%s)", folder, self.device, self.runtime)

    def _call(self, function, *args):
        """Runs ``function(*args)`` in the CPU worker thread of the torch runtime (see the module docstring), or
        here (OpenVINO, whose networks have one thread of their own, or a GPU)."""
        if self._worker is None:
            return function(*args)
        return self._worker.submit(function, *args).result()

    def detect(self, rgb: np.ndarray) -> Detections:
        """Finds every face of at least ``min_face_px`` in an image.

        Args:
            rgb: uint8 (H, W, 3) RGB image.

        Returns:
            The faces, best score first.
        """
        return self._call(self._detect, rgb)

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
            offsets, probability = self._pnet(level[None])
            probability = probability[0]
            offsets = offsets[0]
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

    def _run_rnet(self, rgb: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        offsets, probability = self._rnet(self._crops(rgb, boxes, 24))
        keep = probability >= self.thresholds[1]
        boxes, probability = boxes[keep], probability[keep]
        delta = offsets[keep]
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

    def _run_onet(self, crops: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        offsets, points, probability = (output.astype(np.float64) for output in self._onet(crops))
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

    def _score_boxes(self, rgb: np.ndarray, boxes: np.ndarray) -> Detections:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))
        offsets, points, probability = self._run_onet(self._crops(rgb, boxes, 48))
        size = (boxes[:, 2:] - boxes[:, :2])[:, None, :]
        return Detections(_refine(boxes, offsets), probability, boxes[:, None, :2] + points * size)
