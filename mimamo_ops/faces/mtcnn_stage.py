"""The default face stage (``--face_backend mtcnn``): MTCNN detection and check, dlib's 68 landmarks (spec 2).

Detection: ``mtcnn_model.MtcnnDetector`` finds frontal, three-quarter and profile faces down to
``min_face_px`` (weights from the ``mtcnn`` pip package, MIT). Landmarks: dlib's 68-point shape predictor
(iBUG-68, the points spec 2.6 aligns on), started from MTCNN's five points instead of a HOG box:

* the five points give the face's in-plane angle (eye midpoint -> mouth midpoint), the O-Net box its centre and
  size; the predictor's mean shape is placed there (``_MTCNN_BOX_IN_FACE_UNITS`` relates the two boxes), and
  the predictor runs twice in an upright patch (``fitting.FaceFitter``'s tracking fit);
* tracking and the quality check: each frame the predictor starts from the previous landmarks; the face is
  then warped upright into O-Net's 48x48 input, and O-Net's face probability is the check (about 1 ms, against
  2 ms for the HOG check) and its box says whether the fit drifted (then the landmarks are refitted from
  O-Net's box and points).

The landmarks map onto the alignment's 24 rigid points exactly as the dlib stage's do (they are the same
iBUG-68 points from the same predictor), and the same template is used. A frontal face that dlib's full-frame
HOG detector sees (80 px and more at ``upsample`` 0) starts its track from that HOG box, as in the dlib stage,
so on the 24 frontal, well-lit faces of 80 px and more in ``tests/data/faces`` the first frame's crops are the
same as the dlib stage's (eye and mouth corners 0.00 px apart). While tracking, each stage refits by its own
check; after six frames of a still photo 23 of the 24 faces still agree within 1.5 px (median 0.00 px) and one
differs by 2.6 px, less than the dlib stage's own largest frame-to-frame move on these photos (3.95 px;
median 1.1 px). ``tests/ops/test_faces_crop_agreement.py`` holds it.
"""
from typing import NamedTuple, Optional, Tuple

import cv2
import numpy as np

from mimamo_ops.faces.alignment import transform_points
from mimamo_ops.faces.builtin_stage import TrackingFaceExtractor
from mimamo_ops.faces.fitting import FaceFitter
from mimamo_ops.faces.landmark_model import LandmarkModel
from mimamo_ops.faces.mtcnn_model import MtcnnDetector, square_boxes
from mimamo_ops.faces.records import FaceConfig

__all__ = ["ColourFrame", "MtcnnFaceExtractor", "MtcnnFitter"]

# Where a refined MTCNN (O-Net) box sits in face units (the shape predictor's box frame, see
# ``fitting.FaceFitter``): (x0, y0, x1, y1), the mean over frontal faces of the labelled set
# (tests/data/faces) of ``FaceFitter.calibration(mtcnn_box, landmarks)``, rounded to 0.01.
_MTCNN_BOX_IN_FACE_UNITS = np.array([-0.01, -0.06, 1.02, 0.97])
_ONET_SIZE_PX = 48
_UNIT_BOX = np.array([0.0, 0.0, 1.0, 1.0])
# Below this overlap between O-Net's refined box and the crop, a tracked face is refitted from O-Net's box.
_REFIT_IOU = 0.6
# Mean-shape indices of MTCNN's five points: eye centres (means of 36-41 and 42-47), nose tip, mouth corners.
_RIGHT_EYE = np.arange(36, 42)
_LEFT_EYE = np.arange(42, 48)
_MOUTH_CORNERS = (48, 54)


class ColourFrame(NamedTuple):
    """A frame in the two forms the MTCNN stage uses: rgb uint8 (H, W, 3) and gray uint8 (H, W)."""

    rgb: np.ndarray
    gray: np.ndarray


def _face_angle_rad(points: np.ndarray) -> float:
    """In-plane angle of a face from five (x, y) points: ``atan2(dx, dy)`` of the eye-midpoint -> mouth-midpoint
    direction (dx, dy), radians; 0 when it points straight down the image (+y)."""
    down = points[3:5].mean(axis=0) - points[0:2].mean(axis=0)
    return float(np.arctan2(down[0], down[1]))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    return inter / max((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter, 1e-9)


def _frame_box(inverse: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Maps an upright box (x0, y0, x1, y1) of a similarity-warped patch back to the frame: the square box of
    the same centre and area (the patch's rotation is dropped). ``inverse``: float (2, 3) patch -> frame."""
    corners = np.array([[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]])
    centre = transform_points(inverse, corners).mean(axis=0)
    half = 0.5 * np.sqrt(abs(np.linalg.det(inverse[:, :2]))) * np.sqrt((box[2] - box[0]) * (box[3] - box[1]))
    return np.concatenate([centre - half, centre + half])


class MtcnnFitter(FaceFitter):
    """Fits dlib's 68 landmarks to MTCNN detections and tracks them, with O-Net as the quality check.

    Args:
        model: dlib's shape predictor (and its mean shape).
        detector: the MTCNN networks.
        min_probability: least O-Net face probability for a fit to pass.
        min_hog_score: HOG score with which a frontal face is refitted as the dlib stage does.
    """

    def __init__(self, model: LandmarkModel, detector: MtcnnDetector, min_probability: float,
                 min_hog_score: float, upsample: int):
        super().__init__(model, min_hog_score)
        self._detector = detector
        self._min_probability = float(min_probability)
        self._upsample = int(upsample)
        # The last frame's full-frame HOG detections: (frame, float64 (K, 4) boxes); detection frames that start
        # several tracks run the HOG detector once.
        self._hog_frame: Optional[ColourFrame] = None
        self._hog_boxes = np.zeros((0, 4))
        mean = model.mean_shape
        self._mean_angle = _face_angle_rad(np.stack([
            mean[_RIGHT_EYE].mean(axis=0), mean[_LEFT_EYE].mean(axis=0), mean[30],
            mean[_MOUTH_CORNERS[0]], mean[_MOUTH_CORNERS[1]]]))
        box = _MTCNN_BOX_IN_FACE_UNITS
        self._box_centre = (box[:2] + box[2:]) / 2
        self._box_side = float(np.sqrt((box[2] - box[0]) * (box[3] - box[1])))

    def initial_landmarks(self, box: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Places the predictor's mean shape on an MTCNN detection.

        Args:
            box: float (4,) refined O-Net box (x0, y0, x1, y1), pixels.
            points: float (5, 2) its five landmarks (x, y), pixels.

        Returns:
            float64 (68, 2) starting landmarks (x, y), pixels.
        """
        box = np.asarray(box, dtype=np.float64)
        side_px = float(np.sqrt(max((box[2] - box[0]) * (box[3] - box[1]), 1e-6)))
        angle = _face_angle_rad(np.asarray(points, dtype=np.float64)) - self._mean_angle
        cos, sin = np.cos(angle), np.sin(angle)
        # Turns a direction at atan2-angle b (as _face_angle_rad) into one at b + angle.
        rotation = np.array([[cos, sin], [-sin, cos]])
        offsets = (self._model.mean_shape - self._box_centre) * (side_px / self._box_side)
        return (box[:2] + box[2:]) / 2 + offsets @ rotation.T

    def _fit_from(self, gray: np.ndarray, start: np.ndarray) -> np.ndarray:
        landmarks = self._predict_in_patch(gray, start, _UNIT_BOX)
        return self._predict_in_patch(gray, landmarks, _UNIT_BOX)

    def fit_detected(self, frame: ColourFrame, box: np.ndarray) -> Tuple[np.ndarray, Optional[float], np.ndarray]:
        """Fits a face in a full-frame detection box and checks it.

        The predictor starts from MTCNN's five points. When dlib's HOG detector, run over the whole frame as the
        dlib stage runs it (same ``upsample`` and threshold), has a box where the fitted face's predictor box is
        (frontal faces of 80 px and more at ``upsample`` 0), the landmarks are fitted again in that box and the
        track is calibrated by it, exactly as the dlib stage starts its tracks: on such faces the two stages
        start from the same landmarks. Faces it misses are looked for by HOG in the upright patch around the
        fit (frontal faces too small for the full-frame scan), else keep the MTCNN fit and the unit calibration.

        Returns:
            landmarks: float32 (68, 2) pixels; score: O-Net face probability, or None when the fit fails;
            calibration: float64 (4,) the track's box in face units (see ``fitting.FaceFitter``).
        """
        detection = self._detector.score_boxes(frame.rgb, square_boxes(np.asarray(box, dtype=np.float64)[None]))
        start = self.initial_landmarks(detection.boxes[0], detection.points[0])
        landmarks = self._fit_from(frame.gray, start)
        calibration = _UNIT_BOX
        frontal_box = self._frontal_box(frame, landmarks)
        if frontal_box is None:
            matrix, _, hog_box, _, _ = self._check(frame.gray, landmarks, _UNIT_BOX)
            if hog_box is not None:
                frontal_box = _frame_box(cv2.invertAffineTransform(matrix), hog_box)
        if frontal_box is not None:
            landmarks = self._model.predict(frame.gray, frontal_box)
            calibration = self.calibration(frontal_box, landmarks)
        return landmarks, self._check_face(frame, landmarks)[0], calibration

    def _frontal_box(self, frame: ColourFrame, landmarks: np.ndarray) -> Optional[np.ndarray]:
        """The full-frame HOG detection that frames ``landmarks`` as the predictor's box would (overlap with the
        unit box of face units at least ``_REFIT_IOU``), float64 (4,) frame pixels, or None."""
        if frame is not self._hog_frame:
            self._hog_boxes = self._model.detect(frame.gray, self._upsample, self._min_score)[0]
            self._hog_frame = frame
        if len(self._hog_boxes) == 0:
            return None
        overlaps = [_iou(self.calibration(box, landmarks), _UNIT_BOX) for box in self._hog_boxes]
        best = int(np.argmax(overlaps))
        return self._hog_boxes[best] if overlaps[best] >= _REFIT_IOU else None

    def fit_tracked(self, frame: ColourFrame, previous: np.ndarray, calibration: np.ndarray,
                    shift_px: np.ndarray) -> Tuple[np.ndarray, Optional[float]]:
        """Fits a tracked face from its previous landmarks and checks it with O-Net.

        Args:
            frame: the current frame.
            previous: float (68, 2) previous frame's landmarks (x, y), pixels.
            calibration: float (4,) the track's box in face units (from ``fit_detected``).
            shift_px: float (2,) expected motion (x, y) since the previous frame, pixels.

        Returns:
            landmarks: float32 (68, 2) pixels; score: O-Net face probability, or None when the fit fails.
        """
        landmarks = self._predict_in_patch(frame.gray, np.asarray(previous, dtype=np.float64) + shift_px, calibration)
        probability, box, points = self._check_face(frame, landmarks)
        if probability is None or _iou(box, np.array([0.0, 0.0, _ONET_SIZE_PX, _ONET_SIZE_PX])) >= _REFIT_IOU:
            return landmarks, probability
        inverse = cv2.invertAffineTransform(self._crop_matrix(landmarks))
        start = self.initial_landmarks(_frame_box(inverse, box), transform_points(inverse, points))
        refit = self._fit_from(frame.gray, start)
        return refit, self._check_face(frame, refit)[0]

    def _crop_matrix(self, landmarks: np.ndarray) -> np.ndarray:
        """float64 (2, 3) similarity from frame pixels to O-Net's upright 48x48 crop around the face."""
        to_units = self._face_transform(landmarks, 1.0, 0.0)
        scale = _ONET_SIZE_PX / self._box_side
        offset = _ONET_SIZE_PX / 2 - scale * self._box_centre
        return np.vstack([scale * to_units[0], scale * to_units[1]]) + np.array([[0, 0, offset[0]], [0, 0, offset[1]]])

    def _check_face(self, frame: ColourFrame, landmarks: np.ndarray):
        """O-Net on the upright crop around ``landmarks``.

        Returns:
            probability (None when below the threshold); refined box float64 (4,) and five points float64
            (5, 2), both in crop pixels.
        """
        matrix = self._crop_matrix(landmarks)
        crop = cv2.warpAffine(frame.rgb, matrix, (_ONET_SIZE_PX, _ONET_SIZE_PX), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        offsets, points, probability = self._detector.run_onet(crop[None])
        box = (np.array([0.0, 0.0, 1.0, 1.0]) + offsets[0]) * _ONET_SIZE_PX
        score = float(probability[0])
        return (score if score >= self._min_probability else None), box, points[0] * _ONET_SIZE_PX


class MtcnnFaceExtractor(TrackingFaceExtractor):
    """Detects faces with MTCNN, fits and tracks dlib's 68 landmarks, aligns (spec 2.6). Loads the models once,
    in the constructor (about 1.5 s).

    Args:
        config: face-stage settings (``device``, ``runtime``, ``min_face_px`` and ``min_face_probability`` used
            here).

    Raises:
        FaceStageError: a model or the requested OpenFace template cannot be loaded.
    """

    def __init__(self, config: FaceConfig):
        super().__init__(config)
        probability = config.min_face_probability
        self.detector = MtcnnDetector(config.device, config.min_face_px, thresholds=(0.6, 0.7, probability),
                                      runtime=config.runtime)
        self._mtcnn_fitter = MtcnnFitter(self._model, self.detector, probability, config.min_detector_score,
                                         config.upsample)

    @property
    def _fitter(self) -> MtcnnFitter:
        return self._mtcnn_fitter

    def _detect(self, frame: ColourFrame) -> Tuple[np.ndarray, np.ndarray]:
        found = self.detector.detect(frame.rgb)
        return found.boxes, found.scores

    def _prepare(self, rgb: np.ndarray) -> ColourFrame:
        return ColourFrame(rgb, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))

    def _confidence(self, score: float) -> float:
        return float(score)
