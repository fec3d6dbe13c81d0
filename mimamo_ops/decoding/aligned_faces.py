"""Reading aligned faces laid out as OpenFace writes them (spec 2.3).

OpenFace writes ``<out_dir>/<name>_aligned/frame_det_<face:02d>_<frame:06d>.bmp`` with 1-based frame
numbers. The original pipeline sorted the files by that number and fed them in order (spec 1, rows 3-5).
"""
import pathlib
import re
from typing import Iterator, List, Tuple

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".bmp", ".png", ".jpg", ".jpeg")
_FRAME_NUMBER = re.compile(r"(\d+)$")


def frame_number(path: pathlib.Path) -> int:
    """The frame number of an aligned-face file: the last ``_``-separated token of its stem (spec 3.4)."""
    match = _FRAME_NUMBER.search(path.stem.rsplit("_", 1)[-1])
    if match is None:
        raise ValueError(f"{path}: no frame number at the end of the file name (expected e.g. frame_det_00_000001.bmp)")
    return int(match.group(1))


def list_aligned_faces(directory: str, face_id: int = 0) -> List[Tuple[int, pathlib.Path]]:
    """Finds the aligned faces of one face id, sorted by frame number.

    Looks for ``*_aligned/frame_det_<face_id:02d>_*`` under ``directory``; when there is no such folder, the
    images directly in ``directory`` are used (any name ending in a frame number).

    Args:
        directory: an OpenFace output folder, an ``*_aligned`` folder, or a folder of face images.
        face_id: which face to read in OpenFace's multi-face naming.

    Returns:
        (frame number, path) pairs sorted by frame number.

    Raises:
        FileNotFoundError: the folder does not exist or holds no aligned face images.
    """
    root = pathlib.Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    aligned_dirs = sorted(p for p in root.glob("*_aligned") if p.is_dir())
    if aligned_dirs:
        pattern = f"frame_det_{face_id:02d}_*"
        candidates = [p for d in aligned_dirs for p in d.glob(pattern)]
    else:
        candidates = list(root.iterdir())
    faces = [(frame_number(p), p) for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    if not faces:
        raise FileNotFoundError(
            f"{root}: no aligned face images (expected *_aligned/frame_det_{face_id:02d}_NNNNNN.bmp or images in the folder)"
        )
    return sorted(faces)


def read_aligned_faces(faces: List[Tuple[int, pathlib.Path]]) -> Iterator[Tuple[int, np.ndarray]]:
    """Yields (frame number, uint8 (H, W, 3) RGB) one image at a time, in the given order."""
    for number, path in faces:
        with Image.open(path) as image:
            yield number, np.asarray(image.convert("RGB"))
