"""Landmark fitting on upright, scale-normalised patches, and the quality check (spec 2.2 ``-nobadaligned``).

Tracking fit: the frame is warped (similarity) into an upright patch in which the previous frame's face sits
where the shape predictor's mean shape sits in its box; the predictor runs there on a fixed box and its points
are mapped back. In-plane rotation and scale then never reach the predictor, and a constant-velocity shift
starts it where the face should be. Per face this costs a small warp and one predictor run (about 1 ms).

Quality check: the shape predictor always returns a face-like shape, even on background, so the shape cannot
tell a good fit from a lost face. The frame is warped around the fitted landmarks into a 144-px patch in which
the face box is 90 px, and dlib's HOG face detector runs there (about 2 ms, a tenth of a full-frame detection at
640x360): the fit passes when a detection overlapping the expected box scores at least ``min_score``. When the
face moved too far for the predictor, that detection is also where the landmarks are fitted again, so the check
doubles as a local detector.
"""
from typing import Optional, Tuple

import cv2
import numpy as np

from mimamo_ops.faces.alignment import fit_similarity, transform_points
from mimamo_ops.faces.landmark_model import LandmarkModel
from mimamo_ops.faces.template import RIGID_INDICES

__all__ = ["FaceFitter", "score_to_confidence"]

# Prediction patch: the face box is 160 px (about 0.5 frame px per patch px for an 80-px face).
_PREDICT_BOX_PX = 160.0
_PREDICT_MARGIN_PX = 48.0
# Quality patch: the box is 90 px with 27 px around it; the HOG detector's smallest window is 80 px.
_CHECK_BOX_PX = 90.0
_CHECK_MARGIN_PX = 27.0
_MIN_CHECK_IOU = 0.3
# Below this overlap between the check's detection and the expected box, a tracked face is refitted in the
# detection box (a well-tracked face overlaps about 0.75 or more).
_REFIT_IOU = 0.6
# Logistic slope mapping a HOG score to a confidence in (0, 1); a score of 0 (dlib's threshold) gives 0.5.
_CONFIDENCE_SLOPE = 4.0
_UNIT_BOX = np.array([0.0, 0.0, 1.0, 1.0])


def score_to_confidence(score: float) -> float:
    """Maps a HOG detector score to (0, 1) with a logistic; score 0, dlib's own threshold, maps to 0.5."""
    return float(1.0 / (1.0 + np.exp(-_CONFIDENCE_SLOPE * score)))


def _box_iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """IoU of float (K, 4) boxes against one (4,) box (x0, y0, x1, y1); returns float64 (K,)."""
    width = np.clip(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]), 0, None)
    height = np.clip(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]), 0, None)
    inter = width * height
    union = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) + (box[2] - box[0]) * (box[3] - box[1])
    return inter / np.maximum(union - inter, 1e-9)


class FaceFitter:
    """Fits landmarks from a detector box or from the previous frame's landmarks, and checks the fit.

    Boxes are described in "face units": the unit square is where the predictor's mean shape says the box
    sits around a face whose rigid points it matches (similarity fit). A track's ``calibration`` is the box
    its starting detection had, in face units; using it keeps a still face's box a fixed point (no drift or
    shrinking from the face's systematic difference from the mean shape).

    Args:
        model: the loaded detector and predictor.
        min_score: quality-check threshold on the HOG score.
    """

    def __init__(self, model: LandmarkModel, min_score: float):
        self._model = model
        self._min_score = min_score
        self._rigid_mean = model.mean_shape[RIGID_INDICES]

    def _face_transform(self, landmarks: np.ndarray, box_px: float, margin_px: float) -> np.ndarray:
        """float64 (2, 3) similarity from frame pixels to a patch whose face unit square is
        [margin, margin + box]^2."""
        rigid = np.asarray(landmarks, dtype=np.float64)[RIGID_INDICES]
        target = margin_px + box_px * self._rigid_mean
        a = fit_similarity(rigid, target)
        return np.hstack([a, (target.mean(axis=0) - a @ rigid.mean(axis=0))[:, None]])

    def calibration(self, box: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Returns a detector box in face units of the landmarks fitted in it: float64 (4,) (x0, y0, x1, y1).

        The box's centre and size (square root of its area) are kept; the rotation of the face is not.
        """
        matrix = self._face_transform(landmarks, 1.0, 0.0)
        corners = np.array([[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]])
        mapped = transform_points(matrix, corners)
        centre = mapped.mean(axis=0)
        half = 0.5 * np.sqrt(abs(np.linalg.det(matrix[:, :2]))) * np.sqrt((box[2] - box[0]) * (box[3] - box[1]))
        return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])

    def _predict_in_patch(self, gray: np.ndarray, landmarks: np.ndarray, calibration: np.ndarray) -> np.ndarray:
        matrix = self._face_transform(landmarks, _PREDICT_BOX_PX, _PREDICT_MARGIN_PX)
        size = int(_PREDICT_BOX_PX + 2 * _PREDICT_MARGIN_PX)
        patch = cv2.warpAffine(gray, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        points = self._model.predict(patch, _PREDICT_MARGIN_PX + _PREDICT_BOX_PX * calibration)
        return transform_points(cv2.invertAffineTransform(matrix), points).astype(np.float32)

    def fit_tracked(self, gray: np.ndarray, previous: np.ndarray, calibration: np.ndarray,
                    shift_px: np.ndarray) -> Tuple[np.ndarray, Optional[float]]:
        """Fits a tracked face from its previous landmarks and checks the fit.

        The predictor runs in an upright patch placed by the previous landmarks moved by ``shift_px``. The
        quality check's detection then says where the face really is: when its box overlaps the expected box
        by less than ``_REFIT_IOU`` (the face moved too far for the predictor to follow, about 15% of its size
        or more), the landmarks are fitted again in that detection box, in the same patch.

        Args:
            gray: uint8 (H, W) grey frame.
            previous: float (68, 2) previous frame's landmarks (x, y), pixels.
            calibration: float (4,) the track's box in face units.
            shift_px: float (2,) expected motion (x, y) since the previous frame, pixels.

        Returns:
            landmarks: float32 (68, 2) pixels; score: HOG score, or None when the fit fails the check.
        """
        landmarks = self._predict_in_patch(gray, np.asarray(previous, dtype=np.float64) + shift_px, calibration)
        matrix, patch, box, score, iou = self._check(gray, landmarks, calibration)
        if score is None or iou >= _REFIT_IOU:
            return landmarks, score
        points = self._model.predict(patch, box)
        refit = transform_points(cv2.invertAffineTransform(matrix), points).astype(np.float32)
        return refit, self._check(gray, refit, calibration)[3]

    def fit_detected(self, gray: np.ndarray, box: np.ndarray) -> Tuple[np.ndarray, Optional[float], np.ndarray]:
        """Fits a face in a detector box (frame pixels) and checks the fit.

        Returns:
            landmarks and score as ``fit_tracked``, and the new track's calibration (see ``calibration``).
        """
        landmarks = self._model.predict(gray, box)
        return landmarks, self._check(gray, landmarks, _UNIT_BOX)[3], self.calibration(box, landmarks)

    def _check(self, gray: np.ndarray, landmarks: np.ndarray, calibration: np.ndarray):
        """The quality check: runs the detector in the check patch around ``landmarks``.

        Returns:
            matrix: float64 (2, 3) frame-to-patch warp; patch: uint8 (P, P); box: float64 (4,) the best
            detection overlapping the expected box (patch pixels) or None; score: its HOG score or None;
            iou: its overlap with the expected box (0 when none).
        """
        matrix = self._face_transform(landmarks, _CHECK_BOX_PX, _CHECK_MARGIN_PX)
        size = int(_CHECK_BOX_PX + 2 * _CHECK_MARGIN_PX)
        patch = cv2.warpAffine(gray, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        boxes, scores = self._model.detect(patch, 0, self._min_score)
        expected = _CHECK_MARGIN_PX + _CHECK_BOX_PX * np.asarray(calibration, dtype=np.float64)
        iou = _box_iou(boxes, expected) if boxes.shape[0] else np.zeros(0)
        candidates = np.flatnonzero(iou >= _MIN_CHECK_IOU)
        if candidates.size == 0:
            return matrix, patch, None, None, 0.0
        best = candidates[np.argmax(scores[candidates])]
        return matrix, patch, boxes[best], float(scores[best]), float(iou[best])
