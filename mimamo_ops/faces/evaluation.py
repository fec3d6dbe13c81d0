"""Measuring a face stage on labelled still images: recall at an IoU threshold and false faces per image.

The labels are a JSON file (``tests/data/faces/labels.json``) mapping image names to their file and faces; a
face has ``box_px`` (x0, y0, x1, y1) pixels, the bounding box of its 68 landmarks, and the categories ``pose``
(frontal / three-quarter / profile), ``small`` and ``dim``. A stage's face is the bounding box of its fitted 68
landmarks (``FaceRecord.box``), so both sides use the same box convention.
"""
import dataclasses
import json
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import cv2
import numpy as np

from mimamo_ops.faces.tracking import box_iou_matrix, landmark_box, match_boxes

__all__ = ["LabelledImage", "DetectionScore", "load_labelled_images", "score_boxes", "score_detections"]


@dataclasses.dataclass(frozen=True)
class LabelledImage:
    """One labelled image.

    Attributes:
        name: the image's key in the labels file.
        path: the image file.
        boxes_px: float64 (K, 4) face boxes (x0, y0, x1, y1) pixels.
        faces: the K label dicts (``pose``, ``small``, ``dim``, ...), in the order of ``boxes_px``.
    """

    name: str
    path: Path
    boxes_px: np.ndarray
    faces: Tuple[dict, ...]

    def read_rgb(self) -> np.ndarray:
        """Returns the image as uint8 (H, W, 3) RGB."""
        bgr = cv2.imread(str(self.path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"{self.path}: cannot read the labelled image")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@dataclasses.dataclass(frozen=True)
class DetectionScore:
    """How a stage did on a labelled set.

    Attributes:
        found: per image name, a bool per labelled face: matched at the IoU threshold.
        false_faces: per image name, the stage's faces that matched no label.
    """

    found: Dict[str, List[bool]]
    false_faces: Dict[str, int]

    def recall(self, images: Sequence[LabelledImage], keep: Callable[[dict], bool] = lambda face: True) -> float:
        """Fraction of the labelled faces (those ``keep`` accepts) that were found; NaN when there are none."""
        hits = [hit for image in images for face, hit in zip(image.faces, self.found[image.name]) if keep(face)]
        return float(np.mean(hits)) if hits else float("nan")

    def false_faces_per_image(self) -> float:
        """Mean number of false faces per image."""
        return float(np.mean(list(self.false_faces.values())))


def load_labelled_images(labels_path: Path) -> List[LabelledImage]:
    """Reads a labels JSON file; image files are relative to its folder.

    Raises:
        FileNotFoundError: the labels file or an image it names is missing.
        ValueError: a box is not four numbers with x0 < x1 and y0 < y1.
    """
    labels_path = Path(labels_path)
    with open(labels_path, encoding="utf-8") as handle:
        labels = json.load(handle)
    images = []
    for name, entry in labels["images"].items():
        path = labels_path.parent / entry["file"]
        if not path.is_file():
            raise FileNotFoundError(f"{labels_path}: image {entry['file']} of {name!r} is missing")
        boxes = np.array([face["box_px"] for face in entry["faces"]], dtype=np.float64).reshape(-1, 4)
        if np.any(boxes[:, 2] <= boxes[:, 0]) or np.any(boxes[:, 3] <= boxes[:, 1]):
            raise ValueError(f"{labels_path}: {name!r} has a box with x1 <= x0 or y1 <= y0")
        images.append(LabelledImage(name, path, boxes, tuple(entry["faces"])))
    return images


def score_detections(images: Sequence[LabelledImage], find_faces: Callable[[np.ndarray], list],
                     min_iou: float = 0.5) -> DetectionScore:
    """Runs a stage on every image and matches its faces to the labels (``score_boxes``).

    Args:
        images: the labelled set.
        find_faces: the stage on one image: uint8 (H, W, 3) RGB -> [(float (68, 2) landmarks, confidence), ...]
            (``TrackingFaceExtractor.find_faces``).
        min_iou: the least overlap for a face to count as found.

    Returns:
        The per-face hits and per-image false faces.
    """
    boxes = {image.name: [landmark_box(landmarks) for landmarks, _ in find_faces(image.read_rgb())]
             for image in images}
    return score_boxes(images, boxes, min_iou)


def score_boxes(images: Sequence[LabelledImage], boxes: Dict[str, Sequence], min_iou: float) -> DetectionScore:
    """Matches found boxes to the labels one-to-one (Hungarian, by IoU).

    Args:
        images: the labelled set.
        boxes: per image name, the found boxes (x0, y0, x1, y1) pixels, float (K, 4) or a list of (4,).
        min_iou: the least overlap for a face to count as found.

    Returns:
        The per-face hits and per-image false faces.
    """
    found, false_faces = {}, {}
    for image in images:
        found_boxes = np.asarray(boxes[image.name], dtype=np.float64).reshape(-1, 4)
        pairs = [(i, j) for i, j in match_boxes(image.boxes_px, found_boxes, min_iou)
                 if box_iou_matrix(image.boxes_px[i], found_boxes[j])[0, 0] >= min_iou]
        hits = [False] * len(image.faces)
        for i, _ in pairs:
            hits[i] = True
        found[image.name] = hits
        false_faces[image.name] = len(found_boxes) - len(pairs)
    return DetectionScore(found, false_faces)
