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
``mtcnn_model`` (the MTCNN detector), ``mtcnn_weights`` (its weight files, no torch), ``mtcnn_networks`` (its
networks in torch, imported only to run or convert them), ``template`` (alignment templates), ``alignment`` (similarity fit, warp,
mask), ``fitting`` (landmark fitting on normalised patches and the HOG quality check), ``tracking`` (detector
scheduling, matching, track ids), ``shots``, ``identity``, ``builtin_stage``, ``dlib_stage``, ``mtcnn_stage``,
``openface_stage``, ``output`` (OpenFace-layout crops and CSV on disk), ``backends`` (the stage names, light to
import), ``stages`` (``make_face_extractor``), ``evaluation`` (scoring against labelled photos),
``isolated_stage`` (probe, decoding and the face stage of each video in a supervised child process, so that a
native crash, a hang or a memory blow-up costs one video), ``served_source`` (how that child reads a video the
parent streams from storage) and ``isolation`` (its settings and defaults).

May import ``mimamo_ops.decoding``, ``mimamo_ops.runtime`` and ``mimamo_ops.errors``; never the model or the
outputs. Start reading at ``stages.make_face_extractor`` and ``builtin_stage.TrackingFaceExtractor``.
"""
