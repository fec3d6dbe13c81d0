"""Face stage: video in, per-frame 112x112 similarity-aligned face crops out (spec 2).

Two implementations share one interface (``FaceExtractor.extract(video_path) -> Iterator[FrameFaces]``):

* ``DlibFaceExtractor`` (default, installs with pip): dlib's HOG detector and 68-point shape predictor,
  multi-face tracking with stable ids, and OpenFace's similarity alignment (``dlib_stage``).
* ``OpenFaceExtractor``: runs an installed OpenFace 2.x binary and reads its CSV and aligned images
  (``openface_stage``).

Modules: ``records`` (config and records), ``landmark_model`` (locating and loading dlib's models),
``template`` (alignment templates), ``alignment`` (similarity fit, warp, mask), ``fitting`` (landmark fitting
on normalised patches and the quality check), ``tracking`` (detector scheduling, matching, ids), ``dlib_stage``,
``openface_stage``, ``output`` (OpenFace-layout crops and CSV on disk).
"""
from mimamo_ops.faces.dlib_stage import DlibFaceExtractor
from mimamo_ops.faces.openface_stage import OpenFaceExtractor
from mimamo_ops.faces.records import FaceConfig, FaceExtractor, FaceRecord, FrameFaces

__all__ = ["FaceConfig", "FaceRecord", "FrameFaces", "FaceExtractor", "DlibFaceExtractor", "OpenFaceExtractor",
           "make_face_extractor"]


def make_face_extractor(config: FaceConfig) -> FaceExtractor:
    """Builds the face stage a config asks for: OpenFace when ``openface_path`` is set, else dlib.

    Loads the models (or checks the OpenFace binary) now; call it once per worker.

    Raises:
        mimamo_ops.errors.FaceStageError: the models or the OpenFace binary cannot be found or loaded.
    """
    if config.openface_path is not None:
        return OpenFaceExtractor(config)
    return DlibFaceExtractor(config)
