"""Face stage: video in, per-frame 112x112 similarity-aligned face crops out (spec 2).

Three implementations share one interface (``FaceExtractor.extract(video_path) -> Iterator[FrameFaces]``):

* ``MtcnnFaceExtractor`` (default, ``backend="mtcnn"``, installs with pip): the MTCNN detector (frontal,
  three-quarter and profile faces, small and dim ones) and dlib's 68-point landmarks started from MTCNN's five
  points; O-Net checks every tracked frame (``mtcnn_stage``).
* ``DlibFaceExtractor`` (``backend="dlib"``): dlib's HOG frontal detector and check (``dlib_stage``).
* ``OpenFaceExtractor``: runs an installed OpenFace 2.x binary and reads its CSV and aligned images
  (``openface_stage``).

The two built-in stages share ``builtin_stage``: shot cuts end tracks (``shots``), tracks get person ids by a
face descriptor (``identity``), faces are aligned as OpenFace does (``alignment``, ``template``).

Modules: ``records`` (config and records), ``landmark_model`` (locating and loading dlib's models),
``mtcnn_model`` (the MTCNN networks), ``template`` (alignment templates), ``alignment`` (similarity fit, warp,
mask), ``fitting`` (landmark fitting on normalised patches and the HOG quality check), ``tracking`` (detector
scheduling, matching, track ids), ``shots``, ``identity``, ``builtin_stage``, ``dlib_stage``, ``mtcnn_stage``,
``openface_stage``, ``output`` (OpenFace-layout crops and CSV on disk).
"""
from mimamo_ops.faces.dlib_stage import DlibFaceExtractor
from mimamo_ops.faces.mtcnn_stage import MtcnnFaceExtractor
from mimamo_ops.faces.openface_stage import OpenFaceExtractor
from mimamo_ops.faces.records import FACE_BACKENDS, FaceConfig, FaceExtractor, FaceRecord, FrameFaces

__all__ = ["FACE_BACKENDS", "FaceConfig", "FaceRecord", "FrameFaces", "FaceExtractor", "DlibFaceExtractor",
           "MtcnnFaceExtractor", "OpenFaceExtractor", "make_face_extractor"]


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
