"""What the built-in face stages share: per frame, shot-cut check, tracking, person ids, similarity alignment.

Per frame: ``shots.ShotCutDetector`` ends every track at a cut; ``tracking.FaceTracker`` fits the tracked faces
and runs the backend's detector when needed; every face is aligned to the template (spec 2.6); a track's first
face gets a person id from ``identity.IdentityRegistry`` (a dlib face descriptor), and ``identity.AppearanceWatch``
says when a tracked face has changed enough to be identified again (split off as a new track when it is someone
else's). The backends (``dlib_stage``, ``mtcnn_stage``) supply the detector, the fitter and the frame form
these take.
"""
import abc
import dataclasses
import logging
from typing import Any, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from mimamo_ops.decoding.video import DecodeReport, VideoFrame, iter_frames
from mimamo_ops.faces.alignment import build_warp_matrix, mask_face, transform_points, warp_face
from mimamo_ops.faces.identity import AppearanceWatch, FaceDescriber, IdentityRegistry, appearance_signature
from mimamo_ops.faces.landmark_model import LandmarkModel
from mimamo_ops.faces.records import FaceConfig, FaceExtractor, FaceRecord, FrameFaces
from mimamo_ops.faces.shots import ShotCutDetector
from mimamo_ops.faces.template import load_template
from mimamo_ops.faces.tracking import FaceTracker, TrackedFace, landmark_box

__all__ = ["TrackingFaceExtractor"]

logger = logging.getLogger(__name__)


class TrackingFaceExtractor(FaceExtractor):
    """A built-in face stage; subclasses provide the backend (``_detect``, ``_fitter``, ``_prepare``,
    ``_confidence``). Loads dlib's 68-point shape predictor and descriptor model (about 1.5 s, once).

    Args:
        config: face-stage settings.

    Raises:
        FaceStageError: a model or the requested OpenFace template cannot be loaded.
    """

    def __init__(self, config: FaceConfig):
        self.config = config
        self._model = LandmarkModel()
        self._describer = FaceDescriber()
        # float64 (68, 2) destination shape in PDM units (spec 2.6 step 1).
        self.template = load_template(config.template_path, self._model.mean_shape)

    @abc.abstractmethod
    def _detect(self, frame: Any) -> Tuple[np.ndarray, np.ndarray]:
        """Full-frame detector: frame -> (float64 (K, 4) boxes (x0, y0, x1, y1) pixels, float64 (K,) scores)."""

    @property
    @abc.abstractmethod
    def _fitter(self):
        """The backend's landmark fitter and quality check (interface of ``fitting.FaceFitter``)."""

    @abc.abstractmethod
    def _prepare(self, rgb: np.ndarray) -> Any:
        """uint8 (H, W, 3) RGB frame -> the frame form the detector and fitter take."""

    @abc.abstractmethod
    def _confidence(self, score: float) -> float:
        """The quality check's score -> confidence in [0, 1]."""

    def find_faces(self, rgb: np.ndarray) -> List[Tuple[np.ndarray, float]]:
        """Finds the faces of one still image: full-frame detection, landmark fit and quality check, as on the
        first frame of a video (no tracking, no ids).

        Args:
            rgb: uint8 (H, W, 3) RGB image.

        Returns:
            [(landmarks float32 (68, 2) (x, y) pixels, confidence in [0, 1]), ...] of the faces that passed.
        """
        frame = self._prepare(rgb)
        boxes, _ = self._detect(frame)
        faces = []
        for box in boxes:
            landmarks, score, _ = self._fitter.fit_detected(frame, box)
            if score is not None:
                faces.append((np.asarray(landmarks, dtype=np.float32), self._confidence(score)))
        return faces

    def extract(self, video_path: str, report: Optional[DecodeReport] = None) -> Iterator[FrameFaces]:
        """Streams the faces of every decoded frame of ``video_path`` (see ``FaceExtractor.extract``)."""
        total_faces = 0
        for frame_faces in self.extract_frames(iter_frames(video_path, report=report)):
            total_faces += len(frame_faces.faces)
            yield frame_faces
        if total_faces == 0:
            logger.warning("%s: no face found in any frame", video_path)

    def extract_frames(self, frames: Iterable[VideoFrame]) -> Iterator[FrameFaces]:
        """Tracks, identifies and aligns the faces of consecutive frames of one video.

        Args:
            frames: the video's frames in order (``mimamo_ops.decoding.video.VideoFrame``: ``rgb`` uint8 (H, W, 3)).

        Yields:
            One ``FrameFaces`` per frame, in order; faces sorted by ``face_id``.
        """
        tracker = FaceTracker(self._detect, self._fitter, self.config)
        cuts = ShotCutDetector(self.config.cut_threshold)
        people = IdentityRegistry(self.config.reid_max_distance)
        watch = AppearanceWatch(self.config.reid_check_similarity, self.config.reid_check_gap_frames)
        for frame in frames:
            if cuts.is_cut(frame.rgb):
                logger.debug("frame %d: shot cut, %s", frame.index, "ending every track")
                tracker.reset()
            tracked = tracker.step(self._prepare(frame.rgb))
            on_screen = {people.person_of(face.track_id) for face in tracked} - {None}
            faces = []
            for face in tracked:
                aligned = self._crop(frame, face)
                face, person = self._identify(frame, face, aligned, tracker, people, watch, on_screen)
                on_screen.add(person)
                faces.append(self._record(frame, face, person, aligned))
            watch.keep_only(tracker.live_track_ids())
            faces.sort(key=lambda record: record.face_id)
            yield FrameFaces(index=frame.index, timestamp_s=frame.timestamp_s, faces=tuple(faces))

    def _identify(self, frame: VideoFrame, face: TrackedFace, aligned: np.ndarray, tracker: FaceTracker,
                  people: IdentityRegistry, watch: AppearanceWatch, on_screen: set) -> Tuple[TrackedFace, int]:
        """The person a tracked face shows, and the face (under a new track id when its track was split).

        A new track is identified by its descriptor. A known track is identified again when ``watch`` says its
        face changed: still its person (within ``reid_max_distance``), the descriptor is kept as another view;
        clearly someone else (beyond ``reid_switch_distance``), the track is split there and the new segment
        identified as a new track; in between, nothing changes.
        """
        signature = appearance_signature(aligned)
        person = people.person_of(face.track_id)
        if person is not None and not watch.observe(face.track_id, frame.index, signature):
            return face, person
        descriptor = self._describer.describe(frame.rgb, face.landmarks)
        if person is not None:
            distance = people.distance(person, descriptor)
            if distance <= self.config.reid_switch_distance:
                if distance <= self.config.reid_max_distance:
                    people.add_view(person, descriptor)
                watch.checked(face.track_id, frame.index, signature)
                return face, person
            logger.debug("frame %d: track %d no longer shows person %d (descriptor distance %.3f)", frame.index,
                         face.track_id, person, distance)
            on_screen.discard(person)
            face = dataclasses.replace(face, track_id=tracker.split(face.track_id))
        person = people.assign(face.track_id, descriptor, on_screen)
        watch.checked(face.track_id, frame.index, signature)
        return face, person

    def _crop(self, frame: VideoFrame, face: TrackedFace) -> np.ndarray:
        """The face aligned to the template (spec 2.6): uint8 (S, S, 3) RGB, masked when configured."""
        size = self.config.face_size
        matrix = build_warp_matrix(face.landmarks, self.template, size)
        aligned = warp_face(frame.rgb, matrix, size)
        if self.config.mask:
            aligned = mask_face(aligned, transform_points(matrix, face.landmarks))
        return aligned

    def _record(self, frame: VideoFrame, face: TrackedFace, person: int, aligned: np.ndarray) -> FaceRecord:
        return FaceRecord(
            frame_index=frame.index,
            timestamp_s=frame.timestamp_s,
            face_id=person,
            track_id=face.track_id,
            confidence=self._confidence(face.score),
            box=tuple(float(v) for v in landmark_box(face.landmarks)),
            landmarks=np.asarray(face.landmarks, dtype=np.float32),
            aligned=aligned,
        )
