"""Similarity alignment of a face to the template, as OpenFace's ``AlignFace`` (spec 2.6), plus the mask.

Vectorised numpy for the fit, ``cv2.warpAffine`` for the warp. The fit is the closed-form least-squares
similarity of spec 2.6 step 4 (RMS scales and a Kabsch rotation, Umeyama-style); no RANSAC, whose random
inlier sets make the crop jitter from frame to frame.
"""
import dataclasses

import cv2
import numpy as np

from mimamo_ops.faces.template import RIGID_INDICES, sim_scale

__all__ = ["FaceAligner", "fit_similarity", "build_warp_matrix", "warp_face", "transform_points", "mask_face"]

# OpenFace raises the eyebrows of the mask by 30/0.7 * sim_scale px, i.e. 30 px at 112 (spec 2.2).
_BROW_RAISE_AT_112_PX = 30.0
_BROW_INDICES = np.arange(17, 27)


def fit_similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Returns the scaled rotation A with ``A @ (p - mean(source)) ~ q - mean(target)`` (spec 2.6 step 4).

    Both sets are centred on their means and divided by their RMS radii; the rotation is the Kabsch solution
    of the normalised sets (reflections excluded) and the scale is the ratio of the RMS radii. In 2-D the Kabsch
    rotation has a closed form: the angle ``atan2(sum p x q, sum p . q)`` of the centred pairs (p, q), which
    maximises ``sum q . R p`` as the SVD solution does.

    Args:
        source: float (n, 2) points (x, y), n >= 2, not all equal.
        target: float (n, 2) corresponding points (x, y).

    Returns:
        float64 (2, 2) matrix A = (s_target / s_source) R.

    Raises:
        ValueError: the shapes differ or are not (n, 2), or a point set has zero extent.
    """
    source = np.asarray(source, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if source.shape != target.shape or source.ndim != 2 or source.shape[1] != 2 or source.shape[0] < 2:
        raise ValueError(f"need two (n, 2) point sets of the same shape, got {source.shape} and {target.shape}")
    src = source - source.mean(axis=0)
    dst = target - target.mean(axis=0)
    scale_src = np.sqrt((src ** 2).sum() / src.shape[0])
    scale_dst = np.sqrt((dst ** 2).sum() / dst.shape[0])
    if scale_src == 0 or scale_dst == 0:
        raise ValueError("a point set has zero extent (all points equal)")
    cross = float(np.sum(src[:, 0] * dst[:, 1] - src[:, 1] * dst[:, 0]))
    angle = np.arctan2(cross, float(np.sum(src * dst)))
    cos, sin = np.cos(angle), np.sin(angle)
    return (scale_dst / scale_src) * np.array([[cos, -sin], [sin, cos]])


def build_warp_matrix(landmarks: np.ndarray, template: np.ndarray, face_size: int) -> np.ndarray:
    """Returns the 2x3 forward warp from frame pixels to the aligned crop (spec 2.6 steps 3-5).

    The rigid landmarks are fitted to the rigid template points times ``sim_scale(face_size)``, and the centroid
    of all 68 landmarks (standing in for the PDM translation, spec 2.6) lands on pixel
    ``(face_size // 2, face_size // 2)``.

    Args:
        landmarks: float (68, 2) (x, y) frame pixels.
        template: float (68, 2) template in PDM units (``mimamo_ops.faces.template``).
        face_size: crop side in pixels.

    Returns:
        float64 (2, 3) matrix M with ``crop_xy = M[:, :2] @ frame_xy + M[:, 2]``.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    reference = np.asarray(template, dtype=np.float64) * sim_scale(face_size)
    a = fit_similarity(landmarks[RIGID_INDICES], reference[RIGID_INDICES])
    centre = a @ landmarks.mean(axis=0)
    half = face_size // 2
    return np.hstack([a, np.array([[half - centre[0]], [half - centre[1]]])])


def transform_points(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Applies a 2x3 affine matrix to float (n, 2) points (x, y); returns float64 (n, 2)."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp_face(rgb: np.ndarray, matrix: np.ndarray, face_size: int) -> np.ndarray:
    """Warps a frame into the aligned crop: bilinear, constant black border (spec 2.6 step 6).

    Args:
        rgb: uint8 (H, W, 3) frame.
        matrix: float (2, 3) forward warp from ``build_warp_matrix``.
        face_size: crop side in pixels.

    Returns:
        uint8 (face_size, face_size, 3) crop, same channel order as ``rgb``.
    """
    return cv2.warpAffine(rgb, matrix, (face_size, face_size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def mask_face(aligned: np.ndarray, aligned_landmarks: np.ndarray) -> np.ndarray:
    """Blacks out the crop outside the face, as OpenFace without ``-nomask`` (spec 2.2).

    The face region is the convex hull of the 68 aligned landmarks with the ten eyebrow points raised by
    ``30 * face_size / 112`` px (OpenFace fills a triangulation of the same raised points; for iBUG-68 its
    outline is this hull up to the small concavities at the jaw-brow junctions).

    Args:
        aligned: uint8 (S, S, 3) crop.
        aligned_landmarks: float (68, 2) landmarks in crop pixels (``transform_points`` of the warp).

    Returns:
        uint8 (S, S, 3) masked copy.
    """
    points = np.asarray(aligned_landmarks, dtype=np.float64).copy()
    points[_BROW_INDICES, 1] -= _BROW_RAISE_AT_112_PX * aligned.shape[0] / 112.0
    hull = cv2.convexHull(np.round(points).astype(np.int32))
    mask = np.zeros(aligned.shape[:2], dtype=np.uint8)
    cv2.fillConvexPoly(mask, hull, 1)
    return aligned * mask[..., None]


@dataclasses.dataclass(frozen=True)
class FaceAligner:
    """The aligned crop of the built-in face stages, made from a frame and the face's landmarks alone, so that
    a later step can make the same crop again from the landmarks the face stage recorded (work units,
    ``beam_pipeline.units``).

    Attributes:
        template: float64 (68, 2) template in PDM units (``mimamo_ops.faces.template.load_template``).
        face_size: crop side in pixels.
        mask: black out the crop outside the face (``mask_face``).
    """

    template: np.ndarray
    face_size: int
    mask: bool

    def crop(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) RGB frame and float (68, 2) landmarks (frame pixels) -> uint8 (S, S, 3) crop."""
        matrix = build_warp_matrix(landmarks, self.template, self.face_size)
        aligned = warp_face(rgb, matrix, self.face_size)
        if self.mask:
            aligned = mask_face(aligned, transform_points(matrix, landmarks))
        return aligned
