"""Destination templates of the similarity alignment: OpenFace's PDM mean shape, or one derived from dlib.

The alignment (spec 2.6) maps the 24 rigid landmarks onto a reference shape scaled by ``sim_scale``
(0.7 at 112 px). Only the reference's scale and orientation reach the warp (its translation comes from the
landmark centroid), so a template is a 68-point shape in OpenFace's "PDM units" (about millimetres),
image axes (x right, y down), centred on its 68-point mean.

* OpenFace installed: its ``In-the-wild_aligned_PDM_68.txt`` is read and used exactly (x and y of the mean).
* Otherwise (the default): dlib's own mean shape, read from the shape predictor file (the predictor's
  initial shape, ``landmark_model.read_mean_shape``), centred on its 68-point mean and scaled so that its 24
  rigid points have an RMS radius of ``OPENFACE_RIGID_RMS_RADIUS`` PDM units, i.e. 35.6 px in a 112-px crop.

Derivation of that radius and the remaining difference: OpenFace's PDM file is licensed for non-commercial
research only and cannot ship here. A 68-point 3D mean face that circulates in public head-pose code labelled
as OpenFace's in-the-wild model is zero-centred over its 68 points (as spec 2.6 expects of the PDM); its 24
rigid points (x, y) have an RMS radius of 50.92 units and its jaw is 144.8 units wide (101 px at scale 0.7).
The dlib mean shape scaled to the same rigid radius has a 103.4 px jaw, and after both are normalised
(rigid centroid at 0, rigid RMS radius 1) the two shapes differ by 0.077 RMS (0.14 at most) per landmark: the
dlib-derived crop matches OpenFace's scale and rotation to within a few per cent, its centre differs by the
landmark detectors' own differences (spec 2.6), typically about 1 px at 112. Whether that circulating model is
byte-identical to ``In-the-wild_aligned_PDM_68.txt`` of OpenFace 2.2.0 is not verified; give
``template_path`` to use the real file.
"""
import logging
import re
from pathlib import Path
from typing import Optional

import numpy as np

from mimamo_ops.errors import FaceStageError

__all__ = [
    "OPENFACE_PDM_FILE", "OPENFACE_RIGID_RMS_RADIUS", "RIGID_INDICES", "derive_dlib_template",
    "find_openface_pdm", "read_openface_pdm_mean_shape", "sim_scale",
]

logger = logging.getLogger(__name__)

OPENFACE_PDM_FILE = "In-the-wild_aligned_PDM_68.txt"
# Places OpenFace keeps the FaceAnalyser PDM, relative to its binary directory or its source tree.
_PDM_LOCATIONS = (
    "AU_predictors",
    "model/pdms",
    "lib/local/FaceAnalyser/AU_predictors",
    "build/bin/AU_predictors",
    ".",
)
# Spec 2.6 step 3: jaw sides, nose bridge and base, eye corners and lower lids (0-based iBUG-68 indices).
RIGID_INDICES = np.array([1, 2, 3, 4, 12, 13, 14, 15, 27, 28, 29, 31, 32, 33, 34, 35, 36, 39, 40, 41, 42, 45,
                          46, 47])
# RMS radius of the 24 rigid points of OpenFace's mean shape, PDM units (derivation in the module docstring).
OPENFACE_RIGID_RMS_RADIUS = 50.92
# Spec 2.2: sim_scale = 0.7 at the default 112-px output; it follows the size.
_SIM_SCALE_AT_112 = 0.7
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def sim_scale(face_size: int) -> float:
    """Returns OpenFace's similarity scale for an output size, ``0.7 * face_size / 112`` (spec 2.2)."""
    return _SIM_SCALE_AT_112 * face_size / 112.0


def _rigid_rms_radius(shape: np.ndarray) -> float:
    rigid = shape[RIGID_INDICES]
    centred = rigid - rigid.mean(axis=0)
    return float(np.sqrt((centred ** 2).sum(axis=1).mean()))


def derive_dlib_template(mean_shape_box: np.ndarray) -> np.ndarray:
    """Builds the default template from dlib's mean shape (see the module docstring).

    Args:
        mean_shape_box: float (68, 2) dlib's initial shape (x, y) in detector-box units.

    Returns:
        float64 (68, 2) template in PDM units, centred on its 68-point mean, rigid RMS radius
        ``OPENFACE_RIGID_RMS_RADIUS``.
    """
    shape = np.asarray(mean_shape_box, dtype=np.float64)
    centred = shape - shape.mean(axis=0)
    return centred * (OPENFACE_RIGID_RMS_RADIUS / _rigid_rms_radius(centred))


def read_openface_pdm_mean_shape(path: Path) -> np.ndarray:
    """Reads the mean shape of an OpenFace PDM text file.

    The layout is tolerated loosely: comment lines start with ``#``; the first matrix is written as its rows,
    columns and OpenCV type code (one per line), then rows x cols values, one or more per line. The mean shape
    is 204 values: 68 x, then 68 y, then 68 z (spec 2.6). A file of bare numbers (no matrix header) is read
    as the 204 values themselves.

    Args:
        path: ``In-the-wild_aligned_PDM_68.txt``.

    Returns:
        float64 (68, 2) the mean shape's (x, y) in PDM units, unchanged (not centred or scaled).

    Raises:
        FaceStageError: the file cannot be read or holds no 204-value mean shape.
    """
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise FaceStageError(f"{path}: cannot read the OpenFace PDM ({error.strerror})") from error
    tokens = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            if tokens:
                break  # the first matrix ended at the next comment
            continue
        for token in stripped.split():
            if not _NUMBER.match(token):
                raise FaceStageError(f"{path}: not an OpenFace PDM (unexpected token {token!r})")
            tokens.append(token)
    count = 68 * 3
    if len(tokens) >= 3 and all(t.lstrip("+").isdigit() for t in tokens[:3]):
        rows, cols = int(tokens[0]), int(tokens[1])
        if rows * cols != count:
            raise FaceStageError(f"{path}: the PDM mean shape is {rows}x{cols}, expected {count}x1")
        values = tokens[3:3 + count]
    else:
        values = tokens[:count]
    if len(values) != count:
        raise FaceStageError(f"{path}: the PDM mean shape has {len(values)} values, expected {count}")
    mean = np.asarray([float(v) for v in values], dtype=np.float64)
    return np.stack([mean[:68], mean[68:136]], axis=1)


def find_openface_pdm(location: str) -> Optional[Path]:
    """Finds ``In-the-wild_aligned_PDM_68.txt`` for an OpenFace file, binary or directory.

    Args:
        location: the PDM file itself, an OpenFace executable, its binary directory or its source tree.

    Returns:
        The PDM path, or None when none of OpenFace's usual locations holds it.
    """
    path = Path(location)
    if path.is_file() and path.name == OPENFACE_PDM_FILE:
        return path
    if not path.exists():
        return None
    base = path if path.is_dir() else path.parent
    for relative in _PDM_LOCATIONS:
        candidate = base / relative / OPENFACE_PDM_FILE
        if candidate.is_file():
            return candidate
    return None


def load_template(template_path: Optional[str], mean_shape_box: np.ndarray) -> np.ndarray:
    """Returns the alignment template: OpenFace's PDM mean shape when ``template_path`` is given, else the
    dlib-derived one.

    Args:
        template_path: an OpenFace PDM file or a location ``find_openface_pdm`` searches, or None.
        mean_shape_box: float (68, 2) dlib's mean shape in box units (used when ``template_path`` is None).

    Returns:
        float64 (68, 2) template (x, y) in PDM units.

    Raises:
        FaceStageError: ``template_path`` holds no readable PDM.
    """
    if template_path is None:
        return derive_dlib_template(mean_shape_box)
    pdm = find_openface_pdm(template_path)
    if pdm is None:
        raise FaceStageError(f"{template_path}: no {OPENFACE_PDM_FILE} there or in OpenFace's usual folders "
                             f"({', '.join(_PDM_LOCATIONS)})")
    logger.info("aligning to OpenFace's PDM mean shape %s", pdm)
    return read_openface_pdm_mean_shape(pdm)
