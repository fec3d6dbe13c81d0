"""Similarity alignment (spec 2.6): the fit, the warp matrix, the warp and the mask."""
import numpy as np
import pytest

from mimamo_ops.faces.alignment import build_warp_matrix, fit_similarity, mask_face, transform_points, warp_face
from mimamo_ops.faces.template import RIGID_INDICES, sim_scale


def _rotation(angle_rad):
    c, s = np.cos(angle_rad), np.sin(angle_rad)
    return np.array([[c, -s], [s, c]])


def test_fit_similarity_recovers_known_scale_rotation_and_translation_exactly():
    rng = np.random.default_rng(0)
    source = rng.normal(size=(24, 2)) * 30 + 100
    a_true = 0.37 * _rotation(0.6)
    target = source @ a_true.T + np.array([5.0, -12.0])
    a = fit_similarity(source, target)
    np.testing.assert_allclose(a, a_true, rtol=0, atol=1e-12)


def test_fit_similarity_never_returns_a_reflection():
    rng = np.random.default_rng(1)
    source = rng.normal(size=(30, 2))
    mirrored = source * np.array([-1.0, 1.0])
    a = fit_similarity(source, mirrored)
    assert np.linalg.det(a) > 0


def test_fit_similarity_rejects_degenerate_or_mismatched_points():
    with pytest.raises(ValueError, match="zero extent"):
        fit_similarity(np.ones((5, 2)), np.zeros((5, 2)) + np.arange(5)[:, None])
    with pytest.raises(ValueError, match="same shape"):
        fit_similarity(np.zeros((5, 2)), np.zeros((4, 2)))


def test_warp_matrix_maps_landmark_centroid_to_crop_centre_and_template_scale():
    rng = np.random.default_rng(2)
    template = rng.normal(size=(68, 2)) * 40
    a_true = 1.9 * _rotation(-0.3)  # frame = a_true @ (template * 0.7) + t
    landmarks = (template * sim_scale(112)) @ a_true.T + np.array([300.0, 170.0])
    matrix = build_warp_matrix(landmarks, template, 112)
    assert matrix.shape == (2, 3)
    np.testing.assert_allclose(transform_points(matrix, landmarks.mean(axis=0)[None]), [[56.0, 56.0]], atol=1e-9)
    # The rigid points land on the scaled template (it is an exact similarity here).
    mapped = transform_points(matrix, landmarks)
    expected = template * sim_scale(112)
    np.testing.assert_allclose(mapped - mapped.mean(axis=0), expected - expected.mean(axis=0), atol=1e-9)


def test_warp_matrix_uses_only_the_24_rigid_points():
    assert RIGID_INDICES.tolist() == [1, 2, 3, 4, 12, 13, 14, 15, 27, 28, 29, 31, 32, 33, 34, 35, 36, 39, 40, 41,
                                      42, 45, 46, 47]
    rng = np.random.default_rng(3)
    template = rng.normal(size=(68, 2)) * 40
    landmarks = template * 0.7 * 2.0 + 200.0
    moved = landmarks.copy()
    non_rigid = np.setdiff1d(np.arange(68), RIGID_INDICES)
    moved[non_rigid] += rng.normal(size=(non_rigid.size, 2)) * 5
    a = build_warp_matrix(landmarks, template, 112)[:, :2]
    a_moved = build_warp_matrix(moved, template, 112)[:, :2]
    np.testing.assert_allclose(a, a_moved, atol=1e-12)


def test_face_size_scales_the_crop_and_its_centre():
    rng = np.random.default_rng(4)
    template = rng.normal(size=(68, 2)) * 40
    landmarks = template + 150.0
    m112 = build_warp_matrix(landmarks, template, 112)
    m224 = build_warp_matrix(landmarks, template, 224)
    np.testing.assert_allclose(m224[:, :2], 2 * m112[:, :2], atol=1e-12)
    np.testing.assert_allclose(transform_points(m224, landmarks.mean(axis=0)[None]), [[112.0, 112.0]], atol=1e-9)


def test_warp_face_is_bilinear_with_black_border():
    frame = np.full((50, 60, 3), 200, dtype=np.uint8)
    shift = np.array([[1.0, 0.0, 80.0], [0.0, 1.0, 0.0]])  # the frame lands right of x = 80
    crop = warp_face(frame, shift, 112)
    assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
    assert crop[10, 100].tolist() == [200, 200, 200]
    assert crop[10, 40].tolist() == [0, 0, 0]
    assert crop[100, 100].tolist() == [0, 0, 0]


def test_mask_keeps_the_face_hull_and_raised_brows_and_blacks_out_the_rest():
    crop = np.full((112, 112, 3), 255, dtype=np.uint8)
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    points = np.stack([56 + 30 * np.cos(angles), 60 + 30 * np.sin(angles)], axis=1)
    masked = mask_face(crop, points)
    assert masked[60, 56].tolist() == [255, 255, 255]
    assert masked[2, 2].tolist() == [0, 0, 0] and masked[108, 108].tolist() == [0, 0, 0]
    assert (masked > 0).mean() < 0.5
