"""Picks and builds the face stage a ``FaceConfig`` asks for (once per worker)."""
from mimamo_ops.faces.dlib_stage import DlibFaceExtractor
from mimamo_ops.faces.mtcnn_stage import MtcnnFaceExtractor
from mimamo_ops.faces.openface_stage import OpenFaceExtractor
from mimamo_ops.faces.records import FaceConfig, FaceExtractor

__all__ = ["make_face_extractor"]


def make_face_extractor(config: FaceConfig) -> FaceExtractor:
    """Builds the face stage a config asks for: OpenFace when ``openface_path`` is set, else ``config.backend``.

    Loads the models (or checks the OpenFace binary) now; call it once per worker.

    Raises:
        mimamo_ops.errors.FaceStageError: the models or the OpenFace binary cannot be found or loaded.
    """
    if config.openface_path is not None:
        return OpenFaceExtractor(config)
    if config.backend == "dlib":
        return DlibFaceExtractor(config)
    return MtcnnFaceExtractor(config)
