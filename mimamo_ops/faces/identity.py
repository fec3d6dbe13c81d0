"""Who a track shows: re-identification of people within a video by dlib's 128-d face descriptor.

Tracks are continuous segments of one face; they end at shot cuts and when a face is lost. When a track starts,
its face's descriptor (dlib's ResNet model ``dlib_face_recognition_resnet_model_v1.dat`` from the
``face-recognition-models`` package; 61 ms on a 2-core AMD EPYC) is weighed against the galleries of the
persons seen so far in the video (``IdentityRegistry``). dlib's descriptor was trained on frontal faces of a fair
size: on small, blurred or turned faces the distances between different people shrink, so only a face that is
large, near-frontal and sharp enough (``FaceQuality``, ``IdentityRegistry.is_reliable``) may take an earlier
person's id, and only with a margin over the second-best person, on the agreement of two views, and never the id
of a person seen in the same frame. Any other track is a new person. ``bench/bench_identity.py`` measured the
limits on identity-labelled real photos (``docs/face_stage.md``): among faces that pass them, the closest two
different people are 0.526 apart and the rule's distance is 0.45.

A track can also come to show someone else without a cut: in a dissolve between two shots, or when the face it
follows is replaced at the same place, the landmarks slide from one face to the other. ``AppearanceWatch``
notices when a track's aligned face no longer looks like it did at its last descriptor (a 28x28 grey
thumbnail's correlation, a few microseconds per face and frame), and only then is the descriptor computed
again: far from what the track showed, the track is split and the new segment identified as any new track.
"""
import dataclasses
import logging
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set

import cv2
import dlib
import numpy as np

from mimamo_ops.errors import FaceStageError
from mimamo_ops.faces.landmark_model import locate_packaged_model
from mimamo_ops.faces.template import RIGID_INDICES

__all__ = ["AppearanceWatch", "FaceDescriber", "FaceQuality", "IdentityRegistry", "MatchResult", "appearance_signature",
           "crop_sharpness", "estimate_yaw_deg", "face_size_px", "locate_descriptor_model", "measure_face_quality"]

logger = logging.getLogger(__name__)

DESCRIPTOR_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
# Gallery views kept per person, and the least distance between two of them (closer views are one view:
# consecutive frames of a still face are about 0.02-0.05 apart).
_MAX_DESCRIPTORS_PER_PERSON = 8
_MIN_VIEW_SPREAD = 0.1
_SIGNATURE_PX = 28
# Sharpness is measured on the aligned crop resampled to this side, in this central window (rows, cols), where
# the template puts the eyes, nose and mouth.
_SHARPNESS_CROP_PX = 112
_SHARPNESS_WINDOW = (slice(24, 96), slice(24, 88))
_SHARPNESS_SIGMA_PX = 1.5
# The nose tip's offset between the two jaw points at eye level (``estimate_yaw_deg``) is about this fraction of
# sin(yaw): the nose stands out from the head's turning axis by about half the face's width.
_NOSE_OFFSET_PER_SIN_YAW = 0.9


@dataclasses.dataclass(frozen=True)
class FaceQuality:
    """How much a face's descriptor can be trusted to tell people apart (measured in ``bench/bench_identity.py``).

    Attributes:
        size_px: the face's size in frame pixels: the side of the shape predictor's box (about a frontal
            detector's box, brows to chin) that its landmarks fill; see ``face_size_px``.
        yaw_deg: the head's turn left or right, degrees, estimated from the landmarks (``estimate_yaw_deg``);
            0 frontal, the sign says which way.
        sharpness: the fraction of the aligned crop's contrast in fine detail (``crop_sharpness``); small and
            blurred faces have little.
        confidence: the stage's face confidence in [0, 1] (MTCNN's O-Net probability).
    """

    size_px: float
    yaw_deg: float
    sharpness: float
    confidence: float


def face_size_px(landmarks: np.ndarray, mean_shape: np.ndarray) -> float:
    """The side, in frame pixels, of the predictor box that ``landmarks`` fill: the RMS radius of their rigid
    points (``template.RIGID_INDICES``) over that of the predictor's mean shape in box units.

    A frontal face's value is close to the width of dlib's HOG box (eyebrows to chin, cheek to cheek); turning
    shrinks it less than it shrinks the box's width.

    Args:
        landmarks: float (68, 2) iBUG-68 points (x, y), frame pixels.
        mean_shape: float (68, 2) the predictor's mean shape, box units (``LandmarkModel.mean_shape``).
    """
    def radius(points: np.ndarray) -> float:
        rigid = np.asarray(points, dtype=np.float64)[RIGID_INDICES]
        return float(np.sqrt(((rigid - rigid.mean(axis=0)) ** 2).sum(axis=1).mean()))
    return radius(landmarks) / radius(mean_shape)


def estimate_yaw_deg(landmarks: np.ndarray) -> float:
    """Estimates the head's yaw from 68 landmarks, degrees: 0 frontal, +-90 profile (positive: the nose points
    towards image x growing).

    The nose tip (30) is projected on the line between the jaw points at eye level (0 and 16); its offset from
    their midpoint, as a fraction of half their distance, is taken as ``_NOSE_OFFSET_PER_SIN_YAW * sin(yaw)``.
    A landmark fit on a turned face folds the far jaw onto the visible outline, so the estimate saturates near
    profile; it orders faces by turn and separates frontal, three-quarter and profile.

    Args:
        landmarks: float (68, 2) iBUG-68 points (x, y), pixels.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    left, right, nose = points[0], points[16], points[30]
    axis = right - left
    fraction = float((nose - left) @ axis) / max(float(axis @ axis), 1e-9)
    offset = np.clip((2.0 * fraction - 1.0) / _NOSE_OFFSET_PER_SIN_YAW, -1.0, 1.0)
    return float(np.degrees(np.arcsin(offset)))


def crop_sharpness(aligned: np.ndarray) -> float:
    """The fraction of an aligned face crop's contrast in fine detail: the norm of the grey crop minus its
    Gaussian blur (sigma 1.5 px at 112 px), over the norm of the crop minus its mean, in the central window.

    A sharp face of 100 px or more gives about 0.2-0.35; a face enlarged from 30 px, or blurred, much less
    (``bench/bench_identity.py``).

    Args:
        aligned: uint8 (S, S, 3) RGB similarity-aligned crop (spec 2.6).
    """
    grey = cv2.cvtColor(np.ascontiguousarray(aligned), cv2.COLOR_RGB2GRAY)
    if grey.shape[0] != _SHARPNESS_CROP_PX:
        grey = cv2.resize(grey, (_SHARPNESS_CROP_PX, _SHARPNESS_CROP_PX), interpolation=cv2.INTER_AREA)
    window = grey.astype(np.float32)[_SHARPNESS_WINDOW]
    detail = window - cv2.GaussianBlur(window, (0, 0), _SHARPNESS_SIGMA_PX)
    contrast = float(np.linalg.norm(window - window.mean()))
    return float(np.linalg.norm(detail)) / max(contrast, 1e-6)


def measure_face_quality(landmarks: np.ndarray, aligned: np.ndarray, confidence: float,
                         mean_shape: np.ndarray) -> FaceQuality:
    """Measures a face's ``FaceQuality`` from its landmarks (float (68, 2) frame pixels), its uint8 (S, S, 3)
    aligned crop, its confidence in [0, 1] and the predictor's float (68, 2) mean shape (box units)."""
    return FaceQuality(size_px=face_size_px(landmarks, mean_shape), yaw_deg=estimate_yaw_deg(landmarks),
                       sharpness=crop_sharpness(aligned), confidence=float(confidence))


def locate_descriptor_model() -> Path:
    """Returns the path of dlib's face descriptor model (``landmark_model.locate_packaged_model``)."""
    return locate_packaged_model(DESCRIPTOR_MODEL_FILE)


class FaceDescriber:
    """dlib's face descriptor network, loaded once (about 0.3 s, 22 MB)."""

    def __init__(self) -> None:
        path = locate_descriptor_model()
        try:
            self._model = dlib.face_recognition_model_v1(str(path))
        except RuntimeError as error:
            raise FaceStageError(f"{path}: dlib cannot load the descriptor model ({error})") from error

    def describe(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Computes the descriptor of one face.

        Args:
            rgb: uint8 (H, W, 3) RGB frame, C-contiguous.
            landmarks: float (68, 2) iBUG-68 landmarks (x, y), frame pixels.

        Returns:
            float64 (128,) descriptor, unit-free; Euclidean distance compares faces.
        """
        points = np.asarray(landmarks, dtype=np.float64)
        x0, y0 = np.floor(points.min(axis=0)).astype(int)
        x1, y1 = np.ceil(points.max(axis=0)).astype(int)
        shape = dlib.full_object_detection(
            dlib.rectangle(int(x0), int(y0), int(x1), int(y1)),
            [dlib.point(int(round(x)), int(round(y))) for x, y in points])
        return np.asarray(self._model.compute_face_descriptor(np.ascontiguousarray(rgb), shape), dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class MatchResult:
    """What the descriptor evidence of one track says (``IdentityRegistry.match``).

    Attributes:
        person: the earlier person the evidence points to, or None.
        accepted: True when the evidence suffices to give the track that person's id.
        wants_another_view: True when one more view of the track agreeing with ``person`` would suffice
            (one probe view matched one gallery view).
        distance: the smallest distance from the track's views to ``person``'s gallery (inf without one).
        margin: how much nearer ``person`` is than the next person with a gallery (inf when none).
    """

    person: Optional[int]
    accepted: bool
    wants_another_view: bool
    distance: float
    margin: float


@dataclasses.dataclass
class _Person:
    views: List[np.ndarray] = dataclasses.field(default_factory=list)  # float64 (128,) gallery descriptors
    view_yaws_deg: List[float] = dataclasses.field(default_factory=list)
    cannot_link: Set[int] = dataclasses.field(default_factory=set)  # persons seen in the same frame


class IdentityRegistry:
    """The persons of one video and their galleries of good views; decides when a track is an earlier person.
    Make one per video.

    Each person keeps up to ``max_views`` descriptors of faces reliable enough to tell people apart
    (``is_reliable``), chosen to differ from each other (frontal and turned views, with and without glasses...),
    and the persons ever seen in the same frame as them (cannot-links). A track takes an earlier person's id
    only when (``match``):

    * every view of the track is nearest to that person, within ``max_distance`` of one of its gallery views;
    * the person is nearer than every other person with a gallery by at least ``min_margin``;
    * the evidence holds for more than one view: two views of the track, or one view within ``max_distance``
      of two gallery views;
    * the person was never in a frame with the track, nor with the track's current person (cannot-link).

    Args:
        max_distance: largest descriptor distance of a matching pair of views.
        min_margin: least distance between the nearest and the second-nearest person.
        max_views: gallery size per person.
        min_view_spread: a new view closer than this to a kept view is the same view (not added, not counted
            twice as agreement).
    """

    def __init__(self, max_distance: float, min_margin: float, max_views: int = _MAX_DESCRIPTORS_PER_PERSON,
                 min_view_spread: float = _MIN_VIEW_SPREAD):
        self.max_distance = float(max_distance)
        self.min_margin = float(min_margin)
        self.max_views = int(max_views)
        self.min_view_spread = float(min_view_spread)
        self._people: List[_Person] = []
        self._person_of_track: Dict[int, int] = {}

    def person_of(self, track_id: int) -> Optional[int]:
        """Returns the person id of a known track, or None when the track has not been assigned yet."""
        return self._person_of_track.get(track_id)

    def has_views(self, person: int) -> bool:
        """Whether ``person`` has a gallery (was seen reliably at least once)."""
        return bool(self._people[person].views)

    def views(self, person: int) -> np.ndarray:
        """float64 (V, 128) the gallery of ``person``."""
        return np.stack(self._people[person].views).reshape(-1, 128) if self._people[person].views else np.zeros(
            (0, 128))

    def cannot_link(self, person: int) -> Set[int]:
        """The persons ever seen in the same frame as ``person``."""
        return set(self._people[person].cannot_link)

    def open_person(self, track_id: int) -> int:
        """Gives ``track_id`` a new person id (0-based, in order of first appearance), with an empty gallery."""
        person = len(self._people)
        self._people.append(_Person())
        self._person_of_track[track_id] = person
        logger.debug("track %d: new person %d", track_id, person)
        return person

    def join(self, track_id: int, person: int) -> None:
        """Gives ``track_id`` the id of an earlier ``person`` (after ``match`` accepted it)."""
        self._person_of_track[track_id] = person
        logger.debug("track %d: person %d again", track_id, person)

    def note_together(self, persons: Iterable[int]) -> None:
        """Records that ``persons`` were seen in one frame: none of them is ever any other of them."""
        persons = set(persons)
        for person in persons:
            self._people[person].cannot_link |= persons - {person}

    def distance(self, person: int, descriptor: np.ndarray) -> float:
        """Distance from a descriptor to the nearest gallery view of ``person`` (inf without a gallery)."""
        views = self.views(person)
        if len(views) == 0:
            return float("inf")
        return float(np.min(np.linalg.norm(views - np.asarray(descriptor, dtype=np.float64), axis=1)))

    def add_view(self, person: int, descriptor: np.ndarray, yaw_deg: float = 0.0) -> bool:
        """Offers a reliable view of ``person`` to its gallery; returns whether it was kept.

        A view within ``min_view_spread`` of a kept one is not kept. A full gallery keeps the views that differ
        most: the new view replaces the kept view nearest to another kept view, when the new view is further
        from the others than that.
        """
        descriptor = np.asarray(descriptor, dtype=np.float64)
        entry = self._people[person]
        views = self.views(person)
        if len(views):
            nearest = float(np.min(np.linalg.norm(views - descriptor, axis=1)))
            if nearest < self.min_view_spread:
                return False
        if len(entry.views) < self.max_views:
            entry.views.append(descriptor)
            entry.view_yaws_deg.append(float(yaw_deg))
            return True
        gaps = np.linalg.norm(views[:, None] - views[None], axis=2) + np.diag(np.full(len(views), np.inf))
        redundant = int(np.argmin(gaps.min(axis=1)))
        others = np.delete(views, redundant, axis=0)
        if float(np.min(np.linalg.norm(others - descriptor, axis=1))) <= float(gaps.min()):
            return False
        entry.views[redundant] = descriptor
        entry.view_yaws_deg[redundant] = float(yaw_deg)
        return True

    def match(self, probes: Sequence[np.ndarray], excluded: Set[int]) -> MatchResult:
        """Weighs the views of one track against every person's gallery (the rule in the class docstring).

        Args:
            probes: float (128,) descriptors of reliable views of the track, from different frames.
            excluded: persons the track cannot be (seen with it in a frame, or cannot-linked to its person).

        Returns:
            The nearest person and whether the evidence suffices.
        """
        probes = [np.asarray(p, dtype=np.float64) for p in probes]
        candidates = [person for person in range(len(self._people)) if self._people[person].views]
        if not probes or not candidates:
            return MatchResult(None, False, False, float("inf"), float("inf"))
        # float64 (P, V) distances per candidate person, probes by gallery views
        tables = {person: np.linalg.norm(np.stack(probes)[:, None] - self.views(person)[None], axis=2)
                  for person in candidates}
        nearest = {person: table.min(axis=1) for person, table in tables.items()}  # (P,) per person
        best_per_probe = [min(candidates, key=lambda person: nearest[person][k]) for k in range(len(probes))]
        best = best_per_probe[0]
        distance = float(nearest[best].max())
        others = [nearest[person] for person in candidates if person != best]
        margin = float(np.min(np.stack(others).min(axis=0) - nearest[best])) if others else float("inf")
        supported = (all(person == best for person in best_per_probe) and distance <= self.max_distance
                     and margin >= self.min_margin and best not in excluded)
        if not supported:
            return MatchResult(best, False, False, distance, margin)
        agreeing_gallery_views = int(np.sum((tables[best] <= self.max_distance).any(axis=0)))
        accepted = len(probes) >= 2 or agreeing_gallery_views >= 2
        return MatchResult(best, accepted, not accepted, distance, margin)

    @staticmethod
    def is_reliable(quality: FaceQuality, min_face_px: float, max_yaw_deg: float, min_sharpness: float,
                    min_confidence: float) -> bool:
        """Whether a face's descriptor separates people well enough to re-identify by it (the limits are
        ``records.FaceConfig``'s ``reid_min_face_px``, ``reid_max_yaw_deg``, ``reid_min_sharpness`` and
        ``reid_min_confidence``, set from ``bench/bench_identity.py``)."""
        return (quality.size_px >= min_face_px and abs(quality.yaw_deg) <= max_yaw_deg
                and quality.sharpness >= min_sharpness and quality.confidence >= min_confidence)


def appearance_signature(aligned: np.ndarray) -> np.ndarray:
    """float64 (784,) zero-mean, unit-norm 28x28 grey thumbnail of a uint8 (S, S, 3) RGB aligned face crop; the dot
    product of two is their normalised correlation (1: same picture up to brightness and contrast)."""
    grey = cv2.cvtColor(np.ascontiguousarray(aligned), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (_SIGNATURE_PX, _SIGNATURE_PX), interpolation=cv2.INTER_AREA).astype(np.float64).ravel()
    small -= small.mean()
    return small / max(float(np.linalg.norm(small)), 1e-9)


class AppearanceWatch:
    """Says when a track's face has changed enough since its identity checks to check again. Make one per video.

    A track keeps the signatures (``appearance_signature``) of its face at its last few checks; a check is due
    when, for two frames in a row, the face correlates with none of them at ``min_similarity`` or more (a
    one-frame misfit of the landmarks, which changes the crop as much as another face does, is not a change of
    person), or when the track comes back after frames without a face (the detection that continued it may be
    someone else's).

    Args:
        min_similarity: the correlation below which the face has changed (the same face panning, scaling and
            rolling stays above 0.95; two different people's aligned faces correlate at 0.26 in the median,
            0.81 at the 99th percentile, on the labelled photos).
        min_gap_frames: frames that pass between two checks of a track at least (a face turning or grimacing
            keeps changing; this bounds the descriptor's cost to one per that many frames and face).
    """

    _KEPT_SIGNATURES = 8
    _CHANGED_FRAMES = 2

    def __init__(self, min_similarity: float, min_gap_frames: int):
        self.min_similarity = float(min_similarity)
        self.min_gap_frames = int(min_gap_frames)
        self._state: Dict[int, _WatchedTrack] = {}

    def observe(self, track_id: int, frame_index: int, signature: np.ndarray) -> bool:
        """Notes a track's face (its signature) in this frame; True when it should be identified again."""
        state = self._state.get(track_id)
        if state is None:
            return True
        returned = frame_index - state.last_seen > 1
        state.last_seen = frame_index
        similarity = max(float(reference @ signature) for reference in state.references)
        state.changed_frames = state.changed_frames + 1 if similarity < self.min_similarity else 0
        due = frame_index - state.checked_at >= self.min_gap_frames
        return due and (returned or state.changed_frames >= self._CHANGED_FRAMES)

    def checked(self, track_id: int, frame_index: int, signature: np.ndarray) -> None:
        """Records a check (or a new track's first identification) of ``track_id`` at this frame."""
        state = self._state.setdefault(track_id, _WatchedTrack())
        state.references = (state.references + [signature])[-self._KEPT_SIGNATURES:]
        state.checked_at = state.last_seen = frame_index
        state.changed_frames = 0

    def keep_only(self, track_ids: Set[int]) -> None:
        """Forgets the tracks not in ``track_ids`` (the tracker's live tracks)."""
        for track_id in set(self._state) - set(track_ids):
            del self._state[track_id]


@dataclasses.dataclass
class _WatchedTrack:
    references: List[np.ndarray] = dataclasses.field(default_factory=list)  # float64 (784,) signatures
    checked_at: int = 0  # frame index of the last check
    last_seen: int = 0  # frame index of the last frame with the face
    changed_frames: int = 0  # consecutive frames unlike every reference
