"""What the built-in face stages share: per frame, shot-cut check, tracking, person ids, similarity alignment.

Per frame: ``shots.ShotCutDetector`` ends every track at a cut; ``tracking.FaceTracker`` fits the tracked faces
and runs the backend's detector when needed; every face is aligned to the template (spec 2.6). A track gets its
person id (``face_id``) when it starts: an earlier person's only on reliable evidence (``identity.IdentityRegistry``:
a face large, frontal and sharp enough, a match with a margin over the second-best person, agreement of two
views, never a person seen in the same frame), else a new one; a track that started on faces too small or turned
to tell is identified again when its face becomes good enough, and continues as the earlier person it shows, if
any, under a new track id. ``identity.AppearanceWatch`` says when a tracked face has changed enough to be
identified again (split off as a new track when it is someone else's). Each face record says how its id was
decided (``FaceRecord.id_source``). The backends (``dlib_stage``, ``mtcnn_stage``) supply the detector, the
fitter and the frame form these take.
"""
import abc
import collections
import dataclasses
import logging
from typing import Any, Deque, Dict, Iterable, Iterator, List, Optional, Set, Tuple

import numpy as np

from mimamo_ops.decoding.video import DecodeReport, VideoFrame, iter_frames
from mimamo_ops.faces.alignment import FaceAligner
from mimamo_ops.faces.identity import (AppearanceWatch, FaceDescriber, FaceQuality, IdentityRegistry,
                                       appearance_signature, measure_face_quality)
from mimamo_ops.faces.landmark_model import LandmarkModel, locate_shape_predictor, read_mean_shape
from mimamo_ops.faces.records import (ID_SOURCE_NEW, ID_SOURCE_REID, FaceConfig, FaceExtractor, FaceRecord,
                                      FrameFaces)
from mimamo_ops.faces.shots import ShotCutDetector
from mimamo_ops.faces.template import load_template
from mimamo_ops.faces.tracking import FaceTracker, TrackedFace, landmark_box

__all__ = ["TrackingFaceExtractor", "face_aligner"]

logger = logging.getLogger(__name__)

# Descriptors a track keeps from its checks, to tell when it comes to show someone else.
_MAX_REFERENCES = 8


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
        self.aligner = FaceAligner(self.template, config.face_size, config.mask)

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

        A track whose first view matches an earlier person's single gallery view waits for a second view
        (``reid_view_gap_frames`` later, at most ``reid_pending_frames``): the frames from its start are held
        back until its id is decided, so the output runs up to that many frames behind the input.

        Args:
            frames: the video's frames in order (``mimamo_ops.decoding.video.VideoFrame``: ``rgb`` uint8 (H, W, 3)).

        Yields:
            One ``FrameFaces`` per frame, in order; faces sorted by ``face_id``.
        """
        run = _IdentityRun(self, FaceTracker(self._detect, self._fitter, self.config))
        cuts = ShotCutDetector(self.config.cut_threshold)
        for frame in frames:
            if cuts.is_cut(frame.rgb):
                logger.debug("frame %d: shot cut, %s", frame.index, "ending every track")
                run.tracker.reset()
            tracked = run.tracker.step(self._prepare(frame.rgb))
            run.add_frame(frame, tracked)
            yield from run.ready_frames()
        run.finish()
        yield from run.ready_frames()

    def _crop(self, frame: VideoFrame, face: TrackedFace) -> np.ndarray:
        """The face aligned to the template (spec 2.6): uint8 (S, S, 3) RGB, masked when configured."""
        return self.aligner.crop(frame.rgb, face.landmarks)

    def _record(self, frame: VideoFrame, face: TrackedFace, person: int, aligned: np.ndarray,
                id_source: str) -> FaceRecord:
        return FaceRecord(
            frame_index=frame.index,
            timestamp_s=frame.timestamp_s,
            face_id=person,
            track_id=face.track_id,
            confidence=self._confidence(face.score),
            box=tuple(float(v) for v in landmark_box(face.landmarks)),
            landmarks=np.asarray(face.landmarks, dtype=np.float32),
            aligned=aligned,
            id_source=id_source,
        )


def face_aligner(config: FaceConfig) -> FaceAligner:
    """The crop ``TrackingFaceExtractor`` makes for ``config``, without loading its detector and models (only the
    shape predictor's mean shape is read)."""
    return FaceAligner(load_template(config.template_path, read_mean_shape(locate_shape_predictor())),
                       config.face_size, config.mask)


_PENDING = -1  # face_id of a held-back record whose track's id is not decided yet


@dataclasses.dataclass
class _TrackIdentity:
    """What one track has shown so far, for deciding and checking its person."""

    person: Optional[int] = None  # None while the id is pending
    source: str = ID_SOURCE_NEW
    references: List[np.ndarray] = dataclasses.field(default_factory=list)  # descriptors at its checks
    probes: List[np.ndarray] = dataclasses.field(default_factory=list)  # reliable views weighed for a match
    pending_since: int = 0  # frame index where the pending identification started
    last_probe: int = 0  # frame index of the last probe view
    verified: bool = False  # its person was decided on a reliable view (else: re-identify when it is one)
    together: Set[int] = dataclasses.field(default_factory=set)  # track ids ever seen in the same frame
    excluded: Set[int] = dataclasses.field(default_factory=set)  # persons it cannot be, beyond ``together``'s


class _IdentityRun:
    """Per video: the person of every track (``identity.IdentityRegistry``'s rule), the checks that split a
    track that comes to show someone else (``identity.AppearanceWatch``), and the frames held back while a
    track's id is pending."""

    def __init__(self, stage: TrackingFaceExtractor, tracker: FaceTracker):
        # pylint: disable=protected-access  # the stage's own helpers, used by this part of it
        config = stage.config
        self._crop, self._record = stage._crop, stage._record
        self._confidence, self._mean_shape = stage._confidence, stage._model.mean_shape
        self._descriptor_of = stage._describer.describe
        self.config = config
        self.tracker = tracker
        self.people = IdentityRegistry(config.reid_max_distance, config.reid_min_margin)
        self.watch = AppearanceWatch(config.reid_check_similarity, config.reid_check_gap_frames)
        self.tracks: Dict[int, _TrackIdentity] = {}
        self._held: Deque[Tuple[VideoFrame, List[FaceRecord]]] = collections.deque()

    def add_frame(self, frame: VideoFrame, tracked: List[TrackedFace]) -> None:
        """Identifies and aligns the tracked faces of one frame and holds its records."""
        ids = [face.track_id for face in tracked]
        for track_id in ids:
            self.tracks.setdefault(track_id, _TrackIdentity()).together.update(set(ids) - {track_id})
        records = []
        for face in tracked:
            aligned = self._crop(frame, face)
            face = self._identify(frame, face, aligned)
            state = self.tracks[face.track_id]
            person = _PENDING if state.person is None else state.person
            records.append(self._record(frame, face, person, aligned, state.source))
        self.people.note_together({record.face_id for record in records} - {_PENDING})
        self._held.append((frame, records))
        live = self.tracker.live_track_ids()
        self.watch.keep_only(live)
        for track_id, state in list(self.tracks.items()):
            if track_id not in live:
                if state.person is None:  # lost before a second view: not enough evidence
                    self._decide(track_id, None)
                del self.tracks[track_id]

    def finish(self) -> None:
        """Decides the tracks still pending at the end of the video (as new persons)."""
        for track_id, state in self.tracks.items():
            if state.person is None:
                self._decide(track_id, None)

    def ready_frames(self) -> Iterator[FrameFaces]:
        """The held frames whose faces all have their ids, in order."""
        while self._held and all(record.face_id != _PENDING for record in self._held[0][1]):
            frame, records = self._held.popleft()
            records.sort(key=lambda record: record.face_id)
            yield FrameFaces(index=frame.index, timestamp_s=frame.timestamp_s, faces=tuple(records))

    def _reliable(self, quality: FaceQuality) -> bool:
        config = self.config
        return IdentityRegistry.is_reliable(quality, config.reid_min_face_px, config.reid_max_yaw_deg,
                                            config.reid_min_sharpness, config.reid_min_confidence)

    def _quality(self, face: TrackedFace, aligned: np.ndarray) -> FaceQuality:
        return measure_face_quality(face.landmarks, aligned, self._confidence(face.score), self._mean_shape)

    def _describe(self, frame: VideoFrame, face: TrackedFace) -> np.ndarray:
        return self._descriptor_of(frame.rgb, face.landmarks)

    def _excluded(self, track_id: int) -> Set[int]:
        """The persons ``track_id`` cannot be: those of every track ever in a frame with it, and those
        cannot-linked to its current person."""
        state = self.tracks[track_id]
        persons = {self.tracks[other].person for other in state.together if other in self.tracks}
        persons |= {self.people.person_of(other) for other in state.together}
        persons |= state.excluded
        if state.person is not None:
            persons |= self.people.cannot_link(state.person) | {state.person}
        return persons - {None}

    def _identify(self, frame: VideoFrame, face: TrackedFace, aligned: np.ndarray) -> TrackedFace:
        """Decides or checks the person of one tracked face; returns the face (under a new track id when its
        track was split)."""
        state = self.tracks[face.track_id]
        signature = appearance_signature(aligned)
        if not state.references:  # a new track
            self.watch.checked(face.track_id, frame.index, signature)
            self._start(frame, face, aligned, self._describe(frame, face))
            return face
        if state.person is None:  # pending: another view when due
            self.watch.observe(face.track_id, frame.index, signature)  # keeps its last-seen frame
            self._continue(frame, face, aligned)
            return face
        if not self.watch.observe(face.track_id, frame.index, signature):
            if not state.verified and frame.index - state.last_probe >= self.config.reid_check_gap_frames:
                return self._late(frame, face, aligned, None)
            return face
        descriptor = self._describe(frame, face)
        self.watch.checked(face.track_id, frame.index, signature)
        to_gallery = self.people.distance(state.person, descriptor)
        distance = min(float(np.min(np.linalg.norm(np.stack(state.references) - descriptor, axis=1))), to_gallery)
        if distance <= self.config.reid_switch_distance:
            state.references = (state.references + [descriptor])[-_MAX_REFERENCES:]
            if not state.verified:
                return self._late(frame, face, aligned, descriptor)
            quality = self._quality(face, aligned)
            if to_gallery <= self.config.reid_max_distance and self._reliable(quality):
                self.people.add_view(state.person, descriptor, quality.yaw_deg)
            return face
        logger.debug("frame %d: track %d no longer shows person %d (descriptor distance %.3f)", frame.index,
                     face.track_id, state.person, distance)
        new_id = self.tracker.split(face.track_id)
        self.tracks[new_id] = _TrackIdentity(together=set(), excluded={state.person})
        face = dataclasses.replace(face, track_id=new_id)
        self.watch.checked(new_id, frame.index, signature)
        self._start(frame, face, aligned, descriptor)
        return face

    def _start(self, frame: VideoFrame, face: TrackedFace, aligned: np.ndarray, descriptor: np.ndarray) -> None:
        """A track's first identification: an earlier person only on reliable evidence, else a new person."""
        state = self.tracks[face.track_id]
        state.references = [descriptor]
        state.last_probe = state.pending_since = frame.index
        quality = self._quality(face, aligned)
        if not self._reliable(quality):
            self._decide(face.track_id, None)
            return
        state.probes = [descriptor]
        result = self.people.match(state.probes, self._excluded(face.track_id))
        if result.wants_another_view:
            logger.debug("frame %d: track %d may be person %d (distance %.3f, margin %.3f); waiting for "
                         "another view", frame.index, face.track_id, result.person, result.distance, result.margin)
            return
        self._decide(face.track_id, result.person if result.accepted else None, quality.yaw_deg)

    def _continue(self, frame: VideoFrame, face: TrackedFace, aligned: np.ndarray) -> None:
        """A pending track: a second view when due; not enough evidence in time makes it a new person."""
        state = self.tracks[face.track_id]
        if frame.index - state.last_probe >= self.config.reid_view_gap_frames:
            quality = self._quality(face, aligned)
            if self._reliable(quality):
                state.probes.append(self._describe(frame, face))
                state.last_probe = frame.index
                result = self.people.match(state.probes, self._excluded(face.track_id))
                self._decide(face.track_id, result.person if result.accepted else None, quality.yaw_deg)
                return
        if frame.index - state.pending_since >= self.config.reid_pending_frames:
            self._decide(face.track_id, None)

    def _late(self, frame: VideoFrame, face: TrackedFace, aligned: np.ndarray,
              descriptor: Optional[np.ndarray]) -> TrackedFace:
        """A track whose person was opened on unreliable faces, seen reliably now: its person's gallery gets the
        view, unless the evidence (two views, as for a new track) says it is an earlier person; then it continues
        as that person from this frame on, under a new track id (the earlier frames keep theirs: a split, never
        a merge). Returns the face, under its new track id when it was switched."""
        state = self.tracks[face.track_id]
        state.last_probe = frame.index
        quality = self._quality(face, aligned)
        if not self._reliable(quality):
            return face
        if descriptor is None:
            descriptor = self._describe(frame, face)
        state.probes = (state.probes + [descriptor])[-2:]
        result = self.people.match(state.probes, self._excluded(face.track_id))
        if result.wants_another_view:
            return face
        probes, state.probes, state.verified = state.probes, [], True
        if not result.accepted:
            for probe in probes:
                self.people.add_view(state.person, probe, quality.yaw_deg)
            return face
        logger.debug("frame %d: track %d (person %d) is person %d seen before", frame.index, face.track_id,
                     state.person, result.person)
        new_id = self.tracker.split(face.track_id)
        self.tracks[new_id] = _TrackIdentity(person=result.person, source=ID_SOURCE_REID,
                                             references=list(state.references), last_probe=frame.index,
                                             verified=True, together=set(state.together))
        self.people.join(new_id, result.person)
        for probe in probes:
            self.people.add_view(result.person, probe, quality.yaw_deg)
        self._link(new_id)
        self.watch.checked(new_id, frame.index, appearance_signature(aligned))
        return dataclasses.replace(face, track_id=new_id)

    def _link(self, track_id: int) -> None:
        """Records that the person of ``track_id`` was seen with the persons of every track ever beside it."""
        state = self.tracks[track_id]
        others = {self.tracks[other].person for other in state.together if other in self.tracks}
        others |= {self.people.person_of(other) for other in state.together}
        for other in others - {None, state.person}:
            self.people.note_together({state.person, other})

    def _decide(self, track_id: int, person: Optional[int], yaw_deg: float = 0.0) -> None:
        """Gives a track its person: ``person`` (re-identified) or, when None, a new one; fills in its held
        records. Reliable probe views join the person's gallery."""
        state = self.tracks[track_id]
        if person is None:
            person = self.people.open_person(track_id)
            state.source = ID_SOURCE_NEW
        else:
            self.people.join(track_id, person)
            state.source = ID_SOURCE_REID
        state.person = person
        state.verified = bool(state.probes)
        for probe in state.probes:
            self.people.add_view(person, probe, yaw_deg)
        state.probes = []
        self._link(track_id)
        for _, records in self._held:
            for k, record in enumerate(records):
                if record.track_id == track_id and record.face_id == _PENDING:
                    records[k] = dataclasses.replace(record, face_id=person, id_source=state.source)
