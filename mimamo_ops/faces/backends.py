"""The names of the built-in face stages, importable without loading the face stack (``beam_pipeline.flags``).

"mtcnn" (the default: MTCNN detector and check, dlib 68-point landmarks) and "dlib" (dlib's HOG detector and
check). OpenFace is chosen by ``openface_path`` instead.
"""
__all__ = ["FACE_BACKENDS"]

FACE_BACKENDS = ("mtcnn", "dlib")
