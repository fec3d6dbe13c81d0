"""Configuration and the per-frame face records every face stage hands to the rest of the system (spec 2)."""
import abc
from dataclasses import dataclass
from typing import Iterator, Optional, Tuple

import numpy as np

from mimamo_ops.decoding.video import DecodeReport
from mimamo_ops.faces.backends import FACE_BACKENDS

__all__ = ["FaceConfig", "FaceRecord", "FrameFaces", "FaceExtractor", "ID_SOURCES", "ID_SOURCE_NEW", "ID_SOURCE_REID",
           "ID_SOURCE_TRACK"]

# How a face's ``face_id`` was decided (``FaceRecord.id_source``).
ID_SOURCE_NEW = "new"  # its track opened this person id: no earlier person matched, or the evidence was too weak
ID_SOURCE_REID = "reid"  # its track took an earlier person's id by the face-descriptor rule (``identity``)
ID_SOURCE_TRACK = "track"  # box tracking alone, no face descriptor (the OpenFace stage's slots)
ID_SOURCES = (ID_SOURCE_NEW, ID_SOURCE_REID, ID_SOURCE_TRACK)


@dataclass(frozen=True)
class FaceConfig:
    """Settings of the face stage.

    Attributes:
        backend: the built-in stage, one of ``FACE_BACKENDS``: "mtcnn" (default, finds turned, small and dim
            faces) or "dlib" (HOG, frontal faces only).
        multi_face: track every face instead of only the most prominent (largest) one (spec 2.7, 11.3).
            In both modes ``face_id`` names a person within the video (re-identified by a face descriptor)
            and ``track_id`` a continuous segment of one face, ended by a shot cut or a lost face.
        face_size: side of the aligned crop in pixels (OpenFace ``-simsize``). The similarity scale follows
            the size, ``0.7 * face_size / 112`` (spec 2.2).
        mask: black out the pixels outside the face region (OpenFace without ``-nomask``, spec 2.2).
        openface_path: OpenFace's binary directory (holding ``FeatureExtraction`` and ``FaceLandmarkVidMulti``)
            or one of those executables; set, it selects the OpenFace stage instead of the built-in one.
        template_path: OpenFace's ``In-the-wild_aligned_PDM_68.txt`` (or an OpenFace directory holding it) to
            use as the built-in stage's alignment template; None uses the dlib-derived template
            (``mimamo_ops.faces.template``), or OpenFace's PDM when ``openface_path`` holds one.
        detect_every: in multi-face mode, run the full-frame detector every this many frames to find new
            faces. The detector also runs whenever a face is lost or none is tracked.
        max_missing_frames: grace period in frames: a track that found no face for more consecutive frames
            than this ends; a face seen again later starts a new track (new ``track_id``) and gets its
            ``face_id`` back when its descriptor matches.
        upsample: times dlib's full-frame HOG detector upsamples the frame (each doubles its size). 0 finds
            faces of about 80 px and larger; 1 about 40 px, at about 4 times the cost. The MTCNN stage runs the
            same scan when it starts a track, to start frontal faces from the box the dlib stage would use.
        min_detector_score: threshold on dlib's HOG detector score (0 is dlib's default) for both the
            full-frame detector and the per-frame quality check.
        min_track_iou: the least box overlap (intersection over union) with which a detection continues a lost
            track rather than starting a new one.
        min_face_px: the smallest face side the MTCNN detector searches for, pixels of the decoded frame.
        min_face_probability: least MTCNN O-Net face probability for a detection and for the per-frame check.
        reid_max_distance: largest Euclidean distance between two 128-d dlib face descriptors (a view of a new
            track and a gallery view of an earlier person) that counts as the same person. 0.45: among faces that
            pass the reliability limits below, the closest two different people of the labelled photos are 0.526
            apart (``bench/bench_identity.py``, ``docs/face_stage.md``); dlib's own threshold is 0.6.
        reid_switch_distance: descriptor distance from what its track showed so far beyond which a track's face
            is someone else (a dissolve, or a face replaced at the same place): the track is split there and the
            new segment identified afresh. At least ``reid_max_distance``; in between, a track keeps its person.
        reid_min_margin: how much nearer than every other person (with a gallery) the matched person must be.
        reid_min_face_px: least face size (``identity.face_size_px``, about the frontal detector's box width) for a
            face's descriptor to re-identify; a smaller face gets a new ``face_id`` unless the tracker carries it.
        reid_max_yaw_deg: largest head turn (``identity.estimate_yaw_deg``) for a face to re-identify.
        reid_min_sharpness: least fine-detail fraction of the aligned crop (``identity.crop_sharpness``) for a
            face to re-identify (excludes blurred faces, and faces enlarged from much fewer pixels).
        reid_min_confidence: least face confidence for a face to re-identify.
        reid_view_gap_frames: frames between the first and second view weighed for a new track whose first view
            matched a single gallery view of an earlier person.
        reid_pending_frames: most frames a new track waits for that second view (its frames are held back
            meanwhile); without one it gets a new ``face_id``.
        reid_check_similarity: correlation of a track's aligned face with its look at the last identity check
            below which it is identified again (``identity.AppearanceWatch``).
        reid_check_gap_frames: least frames between two identity checks of one track.
        cut_threshold: Bhattacharyya distance between consecutive frames' colour histograms above which a
            shot cut is declared; a third of it suffices when the frames' layouts also differ
            (``mimamo_ops.faces.shots``).
        device: torch device for the MTCNN networks ("cpu", "cuda", "cuda:1").
        runtime: what runs the MTCNN networks, one of ``mimamo_ops.runtime.selection.RUNTIMES``: "auto" (OpenVINO on the
            CPU when installed, else torch), "torch" or "openvino" (``mtcnn_model.MtcnnDetector``).
    """

    backend: str = "mtcnn"
    multi_face: bool = False
    face_size: int = 112
    mask: bool = False
    openface_path: Optional[str] = None
    template_path: Optional[str] = None
    detect_every: int = 8
    max_missing_frames: int = 15
    upsample: int = 0
    min_detector_score: float = -0.3
    min_track_iou: float = 0.2
    min_face_px: float = 24.0
    min_face_probability: float = 0.7
    reid_max_distance: float = 0.45
    reid_switch_distance: float = 0.7
    reid_min_margin: float = 0.1
    reid_min_face_px: float = 60.0
    reid_max_yaw_deg: float = 40.0
    reid_min_sharpness: float = 0.12
    reid_min_confidence: float = 0.8
    reid_view_gap_frames: int = 3
    reid_pending_frames: int = 12
    reid_check_similarity: float = 0.8
    reid_check_gap_frames: int = 5
    cut_threshold: float = 0.45
    device: str = "cpu"
    runtime: str = "auto"

    def __post_init__(self) -> None:
        if self.backend not in FACE_BACKENDS:
            raise ValueError(f"backend must be one of {FACE_BACKENDS}, got {self.backend!r}")
        if self.min_face_px < 12:
            raise ValueError(f"min_face_px must be >= 12 pixels (MTCNN's window), got {self.min_face_px}")
        if not 0.0 < self.min_face_probability < 1.0:
            raise ValueError(f"min_face_probability must be in (0, 1), got {self.min_face_probability}")
        if self.reid_switch_distance < self.reid_max_distance:
            raise ValueError(f"reid_switch_distance ({self.reid_switch_distance}) must be >= reid_max_distance "
                             f"({self.reid_max_distance})")
        if self.reid_min_margin < 0:
            raise ValueError(f"reid_min_margin must be >= 0, got {self.reid_min_margin}")
        if self.reid_view_gap_frames < 1 or self.reid_pending_frames < self.reid_view_gap_frames:
            raise ValueError(f"need 1 <= reid_view_gap_frames <= reid_pending_frames, got "
                             f"{self.reid_view_gap_frames} and {self.reid_pending_frames}")
        if not -1.0 <= self.reid_check_similarity <= 1.0:
            raise ValueError(f"reid_check_similarity must be in [-1, 1], got {self.reid_check_similarity}")
        if self.reid_check_gap_frames < 1:
            raise ValueError(f"reid_check_gap_frames must be >= 1 frame, got {self.reid_check_gap_frames}")
        if not 0.0 < self.cut_threshold < 1.0:
            raise ValueError(f"cut_threshold must be in (0, 1), got {self.cut_threshold}")
        if self.face_size < 16 or self.face_size % 2:
            raise ValueError(f"face_size must be an even number of pixels >= 16, got {self.face_size}")
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be >= 1 frame, got {self.detect_every}")
        if self.max_missing_frames < 0:
            raise ValueError(f"max_missing_frames must be >= 0, got {self.max_missing_frames}")
        if not 0 <= self.upsample <= 2:
            raise ValueError(f"upsample must be 0, 1 or 2, got {self.upsample}")
        if not 0.0 < self.min_track_iou < 1.0:
            raise ValueError(f"min_track_iou must be in (0, 1), got {self.min_track_iou}")


@dataclass(frozen=True)
class FaceRecord:
    """One aligned face in one video frame.

    Attributes:
        frame_index: 0-based index of the decoded video frame (OpenFace's 1-based ``frame`` minus 1).
        timestamp_s: presentation time of the frame in seconds.
        face_id: 0-based person id within the video: the same person keeps it across shot cuts and absences.
        confidence: certainty that this is a well-fitted face, in [0, 1] (OpenFace's ``confidence`` column, or
            the built-in stage's quality check: MTCNN's O-Net face probability, or dlib's HOG score mapped by
            a logistic).
        box: (x0, y0, x1, y1) bounding box of the 68 landmarks, pixels in the upright frame.
        landmarks: float32 (68, 2) iBUG-68 points (x, y), pixels in the upright frame, origin top-left.
        aligned: uint8 (face_size, face_size, 3) RGB similarity-aligned crop (spec 2.6).
        track_id: 0-based id of the continuous segment (track) this face belongs to; a shot cut or a lost face
            ends a track. None (the default) means one track per face: ``face_id``.
        id_source: how ``face_id`` was decided, one of ``ID_SOURCES``: ``"new"`` (its track opened the id: it
            can only be a person also seen under another id, never two people), ``"reid"`` (its track took an
            earlier person's id by the face-descriptor rule), ``"track"`` (box tracking alone).
    """

    frame_index: int
    timestamp_s: float
    face_id: int
    confidence: float
    box: Tuple[float, float, float, float]
    landmarks: np.ndarray
    aligned: np.ndarray
    track_id: Optional[int] = None
    id_source: str = ID_SOURCE_TRACK

    def __post_init__(self) -> None:
        if self.id_source not in ID_SOURCES:
            raise ValueError(f"id_source must be one of {ID_SOURCES}, got {self.id_source!r}")
        if self.track_id is None:  # one track per face (the OpenFace stage)
            object.__setattr__(self, "track_id", self.face_id)


@dataclass(frozen=True)
class FrameFaces:
    """Every face that passed the quality check in one decoded video frame.

    Attributes:
        index: 0-based video frame index.
        timestamp_s: presentation time in seconds.
        faces: the frame's faces ordered by ``face_id``; empty when no face passed (OpenFace ``-nobadaligned``).
    """

    index: int
    timestamp_s: float
    faces: Tuple[FaceRecord, ...]


class FaceExtractor(abc.ABC):
    """A face stage: video file in, one ``FrameFaces`` per decoded frame out.

    Implementations load their models in the constructor (once per worker), never per video.
    """

    @abc.abstractmethod
    def extract(self, video_path: str, report: Optional[DecodeReport] = None) -> Iterator[FrameFaces]:
        """Streams the faces of every decoded frame of ``video_path``, in frame order.

        Args:
            video_path: a local video file, or a ``StreamSource`` (the built-in stages decode it with PyAV;
                OpenFace reads local files only).
            report: filled in with the decoder's damage counts once the video is decoded to its end, by face
                stages that decode the video themselves (the dlib stage; OpenFace decodes on its own).

        Raises:
            mimamo_ops.errors.VideoError: the file cannot be opened or decoded.
            mimamo_ops.errors.FaceStageError: the face stage itself failed.
        """
