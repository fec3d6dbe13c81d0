"""Face tracking for the built-in stages: detector scheduling, overlap matching, quality check, track ids.

Per frame, each live track places the shape predictor from its previous landmarks (no detector), fits the
landmarks and runs the quality check (the backend's fitter: ``fitting.FaceFitter`` for dlib,
``mtcnn_stage.MtcnnFitter`` for MTCNN). The full-frame detector runs only when needed: every ``detect_every``
frames in multi-face mode (to find new faces), and whenever a face was lost or none is tracked. Detections
continue lost tracks by box overlap, or by nearness for faces that moved further than their size (Hungarian
assignment); in multi-face mode the others start new tracks. A track that finds no face for more than
``max_missing_frames`` consecutive frames ends; there is no cap on the number of tracks. Single-face mode keeps
one track on the largest face, as OpenFace's ``FeatureExtraction`` (spec 2.1). ``reset`` ends every track (a
shot cut: landmarks are never carried across one). Track ids count tracks; which person a track shows is
decided above this module (``identity``).

The tracker is agnostic of the backend: a frame is whatever the backend's detector and fitter take (a grey
image for dlib, a ``mtcnn_stage.ColourFrame`` for MTCNN).
"""
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from mimamo_ops.faces.fitting import FaceFitter
from mimamo_ops.faces.records import FaceConfig

__all__ = ["TrackedFace", "FaceTracker", "BoxIdTracker", "box_iou_matrix", "match_boxes", "landmark_box"]

# Two live tracks whose landmark boxes overlap this much follow the same face; the younger one ends.
_DUPLICATE_IOU = 0.5
# A detection also continues a lost track when its centre is within this many face sizes of where the track
# should be (faces moving further than their size per frame, which overlap cannot follow).
_MAX_CENTRE_DISTANCE = 1.0


@dataclass(frozen=True)
class TrackedFace:
    """A face fitted and checked in the current frame.

    Attributes:
        track_id: 0-based id of the track (continuous segment) within the video.
        landmarks: float32 (68, 2) (x, y) frame pixels.
        score: the quality check's score (HOG score for dlib, O-Net face probability for MTCNN).
    """

    track_id: int
    landmarks: np.ndarray
    score: float


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box pair.

    Args:
        a: float (N, 4) boxes (x0, y0, x1, y1) pixels.
        b: float (M, 4) boxes.

    Returns:
        float64 (N, M) IoU in [0, 1].
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)[None, :, :]
    width = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    height = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


def match_boxes(previous: np.ndarray, current: np.ndarray, min_iou: float,
                max_centre_distance: float = 0.0) -> List[Tuple[int, int]]:
    """One-to-one matching of boxes by overlap (Hungarian assignment), optionally also by nearness.

    A pair may match when its IoU is at least ``min_iou`` or, for faces that moved further than their size
    between the two boxes' frames, when the centres are at most ``max_centre_distance`` box sizes apart
    (size: square root of the previous box's area). The assignment minimises the total of
    (normalised centre distance - IoU) over allowed pairs.

    Args:
        previous: float (N, 4) boxes (x0, y0, x1, y1).
        current: float (M, 4) boxes.
        min_iou: overlap that always allows a pair.
        max_centre_distance: centre distance, in previous-box sizes, that also allows a pair (0: overlap only).

    Returns:
        (i, j) index pairs into ``previous`` and ``current``, sorted by i.
    """
    if len(previous) == 0 or len(current) == 0:
        return []
    previous = np.asarray(previous, dtype=np.float64).reshape(-1, 4)
    current = np.asarray(current, dtype=np.float64).reshape(-1, 4)
    iou = box_iou_matrix(previous, current)
    size = np.sqrt(np.maximum((previous[:, 2] - previous[:, 0]) * (previous[:, 3] - previous[:, 1]), 1e-9))
    centre_prev = (previous[:, :2] + previous[:, 2:]) / 2
    centre_cur = (current[:, :2] + current[:, 2:]) / 2
    distance = np.linalg.norm(centre_prev[:, None] - centre_cur[None], axis=2) / size[:, None]
    allowed = (iou >= min_iou) | (distance <= max_centre_distance)
    cost = np.where(allowed, distance - iou, 1e6)
    rows, cols = linear_sum_assignment(cost)
    return [(int(i), int(j)) for i, j in zip(rows, cols) if allowed[i, j]]


def landmark_box(landmarks: np.ndarray) -> np.ndarray:
    """Returns the float64 (4,) bounding box (x0, y0, x1, y1) of float (68, 2) landmarks (x, y)."""
    points = np.asarray(landmarks, dtype=np.float64)
    return np.concatenate([points.min(axis=0), points.max(axis=0)])


# A frame -> (float64 (K, 4) boxes (x0, y0, x1, y1) pixels, float64 (K,) scores) full-frame detector.
Detector = Callable[[Any], Tuple[np.ndarray, np.ndarray]]


@dataclass
class _Track:
    track_id: int
    landmarks: np.ndarray  # float32 (68, 2), the last good fit
    calibration: np.ndarray  # float64 (4,) box in face units, see fitting.FaceFitter
    shift_px: np.ndarray  # float64 (2,) landmark-centroid motion over the last frame
    missing: int = 0  # consecutive frames without a good fit


class FaceTracker:
    """Tracks the faces of one video, frame by frame. Make one per video.

    Args:
        detect: the backend's full-frame detector (shared across videos).
        fitter: landmark fitting and quality check (shared across videos): ``fit_tracked`` and
            ``fit_detected`` as ``fitting.FaceFitter``.
        config: tracking settings (``multi_face``, ``detect_every``, ``max_missing_frames``, ``min_track_iou``).
    """

    def __init__(self, detect: Detector, fitter: FaceFitter, config: FaceConfig):
        self._detect = detect
        self._fitter = fitter
        self._config = config
        self._tracks: List[_Track] = []
        self._next_id = 0
        self._frame_count = 0

    def reset(self) -> None:
        """Ends every track (at a shot cut); the next frame is searched with the full-frame detector."""
        self._tracks = []

    def split(self, track_id: int) -> int:
        """Ends a live track and continues its face as a new track (the face it follows is now someone else's:
        ``identity``); returns the new track's id."""
        new_id = self._next_id
        self._next_id += 1
        for track in self._tracks:
            if track.track_id == track_id:
                track.track_id = new_id
        return new_id

    def live_track_ids(self) -> Set[int]:
        """The ids of the tracks still followed, including those missing for fewer than the grace period."""
        return {track.track_id for track in self._tracks}

    def step(self, gray: Any) -> List[TrackedFace]:
        """Processes the next frame of the video.

        Args:
            gray: the frame as the backend takes it (for dlib: uint8 (H, W) grey frame, C-contiguous).

        Returns:
            The faces that passed the quality check, sorted by ``track_id``.
        """
        found: Dict[int, TrackedFace] = {}
        calibrations: Dict[int, np.ndarray] = {}
        lost = []
        for track in self._tracks:
            if track.missing == 0:
                landmarks, score = self._fitter.fit_tracked(gray, track.landmarks, track.calibration, track.shift_px)
                if score is not None:
                    found[track.track_id] = TrackedFace(track.track_id, landmarks, score)
                    continue
            lost.append(track)
        if self._needs_detection(bool(lost)):
            self._use_detections(gray, found, calibrations, lost)
        self._frame_count += 1
        self._update_tracks(found, calibrations)
        return [found[track_id] for track_id in sorted(found)]

    def _needs_detection(self, lost: bool) -> bool:
        if lost or not self._tracks:
            return True
        return self._config.multi_face and self._frame_count % self._config.detect_every == 0

    def _use_detections(self, gray: np.ndarray, found: Dict[int, TrackedFace],
                        calibrations: Dict[int, np.ndarray], lost: Sequence[_Track]) -> None:
        boxes, scores = self._detect(gray)
        if len(boxes) and found:
            tracked_boxes = np.stack([landmark_box(face.landmarks) for face in found.values()])
            free = box_iou_matrix(boxes, tracked_boxes).max(axis=1) < self._config.min_track_iou
            boxes, scores = boxes[free], scores[free]
        if len(boxes) == 0 or (found and not self._config.multi_face):
            return
        # Where each lost face should be now: moved on at its last velocity when it was lost this frame,
        # at its last place when it has been missing longer (its velocity is stale by then).
        lost_boxes = np.array([landmark_box(track.landmarks) + np.tile(track.shift_px * (track.missing == 0), 2)
                               for track in lost]).reshape(-1, 4)
        matches = match_boxes(lost_boxes, boxes, self._config.min_track_iou, _MAX_CENTRE_DISTANCE)
        continued = {j: lost[i].track_id for i, j in matches}
        # (detection index, track id or None for a new track)
        if self._config.multi_face:
            starts: List[Tuple[int, Optional[int]]] = list(continued.items())
            starts.extend((int(j), None) for j in np.argsort(-scores) if int(j) not in continued)
        else:  # the most prominent face; it continues the lost track when it is that face
            areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            largest = int(np.argmax(areas + 1e-3 * scores))
            starts = [(largest, continued.get(largest))]
        for j, track_id in starts:
            landmarks, score, calibration = self._fitter.fit_detected(gray, boxes[j])
            if score is None:
                continue
            if track_id is None:
                track_id = self._next_id
                self._next_id += 1
            found[track_id] = TrackedFace(track_id, landmarks, score)
            calibrations[track_id] = calibration

    def _update_tracks(self, found: Dict[int, TrackedFace], calibrations: Dict[int, np.ndarray]) -> None:
        by_id = {track.track_id: track for track in self._tracks}
        for track_id in self._find_duplicates(found):
            del found[track_id]
            by_id.pop(track_id, None)
        tracks = []
        for track_id in sorted(set(by_id) | set(found)):
            track = by_id.get(track_id)
            if track_id in found:
                landmarks = found[track_id].landmarks
                if track is None:
                    shift = np.zeros(2)
                else:  # mean motion per frame since the track's last fit
                    shift = (landmarks.mean(axis=0).astype(np.float64) - track.landmarks.mean(axis=0)) / (
                        track.missing + 1)
                calibration = calibrations[track_id] if track_id in calibrations else track.calibration
                track = _Track(track_id, landmarks, calibration, shift)
            else:
                track.missing += 1
            if track.missing <= self._config.max_missing_frames:
                tracks.append(track)
        self._tracks = tracks

    @staticmethod
    def _find_duplicates(found: Dict[int, TrackedFace]) -> List[int]:
        """Returns the ids of faces that overlap an older (lower-id) face of this frame."""
        ids = sorted(found)
        if len(ids) < 2:
            return []
        boxes = np.stack([landmark_box(found[i].landmarks) for i in ids])
        iou = box_iou_matrix(boxes, boxes)
        duplicates: List[int] = []
        for younger in range(1, len(ids)):
            older = [o for o in range(younger) if ids[o] not in duplicates]
            if older and iou[older, younger].max() > _DUPLICATE_IOU:
                duplicates.append(ids[younger])
        return duplicates


class BoxIdTracker:
    """Stable ids for per-frame face boxes from an external tracker (OpenFace's multi-face slots are not
    identity-stable, spec 2.7): overlap matching against the last box of each live id, Hungarian assignment,
    and the same grace period as the built-in tracker.

    Args:
        min_iou: least overlap that continues an id.
        max_missing_frames: frames an id may go unseen before it ends.
    """

    def __init__(self, min_iou: float, max_missing_frames: int):
        self._min_iou = min_iou
        self._max_missing = max_missing_frames
        self._boxes: List[np.ndarray] = []
        self._ids: List[int] = []
        self._missing: List[int] = []
        self._next_id = 0

    def assign(self, boxes: np.ndarray) -> List[int]:
        """Returns one stable id per box of the current frame.

        Args:
            boxes: float (K, 4) this frame's boxes (x0, y0, x1, y1) pixels.

        Returns:
            K ids, in the order of ``boxes``.
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        previous = np.array(self._boxes).reshape(-1, 4)
        ids: List[Optional[int]] = [None] * len(boxes)
        seen = set()
        for i, j in match_boxes(previous, boxes, self._min_iou, _MAX_CENTRE_DISTANCE):
            ids[j] = self._ids[i]
            seen.add(i)
            self._boxes[i] = boxes[j]
            self._missing[i] = 0
        for i in range(len(self._ids)):
            if i not in seen:
                self._missing[i] += 1
        keep = [i for i in range(len(self._ids)) if self._missing[i] <= self._max_missing]
        self._boxes = [self._boxes[i] for i in keep]
        self._ids = [self._ids[i] for i in keep]
        self._missing = [self._missing[i] for i in keep]
        for j, face_id in enumerate(ids):
            if face_id is None:
                ids[j] = self._next_id
                self._boxes.append(boxes[j])
                self._ids.append(self._next_id)
                self._missing.append(0)
                self._next_id += 1
        return [int(face_id) for face_id in ids]
