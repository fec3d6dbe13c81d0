"""Who a track shows: re-identification of people within a video by dlib's 128-d face descriptor.

Tracks are continuous segments of one face; they end at shot cuts and when a face is lost. When a track starts,
its face's descriptor (dlib's ResNet model ``dlib_face_recognition_resnet_model_v1.dat`` from the
``face-recognition-models`` package; 61 ms on a 2-core AMD EPYC, once per track) is compared with the descriptors of
every person seen so far in the video. The nearest person within ``max_distance`` (Euclidean) that is not on
screen in another track gets the track; otherwise the track is a new person. Descriptors of the same person
are about 0.3-0.5 apart, of different people about 0.7-1.0 (dlib's published threshold is 0.6).
"""
import logging
from pathlib import Path
from typing import Dict, List, Set

import dlib
import numpy as np

from mimamo_ops.errors import FaceStageError
from mimamo_ops.faces.landmark_model import locate_packaged_model

__all__ = ["FaceDescriber", "IdentityRegistry", "locate_descriptor_model"]

logger = logging.getLogger(__name__)

DESCRIPTOR_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"
# Descriptors kept per person (the first ones of each of its tracks), so that one bad frame does not decide.
_MAX_DESCRIPTORS_PER_PERSON = 8


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
        if len(self._descriptors[best]) < _MAX_DESCRIPTORS_PER_PERSON:
            self._descriptors[best].append(descriptor)
        self._person_of_track[track_id] = best
        return best
