"""Who a track shows: re-identification of people within a video by dlib's 128-d face descriptor.

Tracks are continuous segments of one face; they end at shot cuts and when a face is lost. When a track starts,
its face's descriptor (dlib's ResNet model ``dlib_face_recognition_resnet_model_v1.dat`` from the
``face-recognition-models`` package; 61 ms on a 2-core AMD EPYC) is compared with the descriptors of every
person seen so far in the video. The nearest person within ``max_distance`` (Euclidean) that is not on screen
in another track gets the track; otherwise the track is a new person. Descriptors of the same person are about
0.3-0.5 apart, of different people about 0.7-1.0 (dlib's published threshold is 0.6).

A track can also come to show someone else without a cut: in a dissolve between two shots, or when the face it
follows is replaced at the same place, the landmarks slide from one face to the other. ``AppearanceWatch``
notices when a track's aligned face no longer looks like it did at its last descriptor (a 28x28 grey
thumbnail's correlation, a few microseconds per face and frame), and only then is the descriptor computed
again: far from the track's person (``IdentityRegistry.distance``), the track is split and the new segment
identified as any new track.
"""
import dataclasses
import logging
from pathlib import Path
from typing import Dict, List, Set

import cv2
import dlib
import numpy as np

from mimamo_ops.errors import FaceStageError
from mimamo_ops.faces.landmark_model import locate_packaged_model

__all__ = ["AppearanceWatch", "FaceDescriber", "IdentityRegistry", "appearance_signature",
           "locate_descriptor_model"]

logger = logging.getLogger(__name__)

DESCRIPTOR_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
# Descriptors kept per person (the first ones of each of its tracks and of its checks), so that one bad frame
# does not decide.
_MAX_DESCRIPTORS_PER_PERSON = 8
_SIGNATURE_PX = 28


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


class IdentityRegistry:
    """Maps the tracks of one video to person ids (``face_id``). Make one per video.

    Args:
        max_distance: largest descriptor distance at which a new track is the same person as an earlier one.
    """

    def __init__(self, max_distance: float):
        self.max_distance = float(max_distance)
        self._descriptors: List[List[np.ndarray]] = []  # per person id
        self._person_of_track: Dict[int, int] = {}

    def person_of(self, track_id: int):
        """Returns the person id of a known track, or None when the track has not been assigned yet."""
        return self._person_of_track.get(track_id)

    def assign(self, track_id: int, descriptor: np.ndarray, on_screen: Set[int]) -> int:
        """Gives a new track a person id: the nearest earlier person within ``max_distance`` that is not in
        ``on_screen`` (person ids of the frame's other tracks), else a new id.

        Args:
            track_id: the new track.
            descriptor: float (128,) its first face's descriptor.
            on_screen: person ids already shown by other tracks in this frame.

        Returns:
            The person id (0-based, in order of first appearance).
        """
        descriptor = np.asarray(descriptor, dtype=np.float64)
        best, best_distance = None, self.max_distance
        for person, stored in enumerate(self._descriptors):
            if person in on_screen:
                continue
            distance = float(np.min(np.linalg.norm(np.stack(stored) - descriptor, axis=1)))
            if distance <= best_distance:
                best, best_distance = person, distance
        if best is None:
            best = len(self._descriptors)
            self._descriptors.append([])
            logger.debug("track %d: new person %d", track_id, best)
        else:
            logger.debug("track %d: person %d again (descriptor distance %.3f)", track_id, best, best_distance)
        self.add_view(best, descriptor)
        self._person_of_track[track_id] = best
        return best

    def distance(self, person: int, descriptor: np.ndarray) -> float:
        """Distance from a descriptor to the nearest stored descriptor of ``person``."""
        stored = np.stack(self._descriptors[person])
        return float(np.min(np.linalg.norm(stored - np.asarray(descriptor, dtype=np.float64), axis=1)))

    def add_view(self, person: int, descriptor: np.ndarray) -> None:
        """Stores another descriptor of ``person`` (a new view of them, e.g. turned), up to the cap."""
        if len(self._descriptors[person]) < _MAX_DESCRIPTORS_PER_PERSON:
            self._descriptors[person].append(np.asarray(descriptor, dtype=np.float64))


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
