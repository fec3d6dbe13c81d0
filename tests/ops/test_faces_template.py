"""Alignment templates: dlib's mean shape read from the .dat, the derived template, OpenFace's PDM reader."""
import numpy as np
import pytest

from mimamo_ops.errors import FaceStageError
from mimamo_ops.faces.landmark_model import locate_shape_predictor, read_mean_shape
from mimamo_ops.faces.template import (
    OPENFACE_PDM_FILE, OPENFACE_RIGID_RMS_RADIUS, RIGID_INDICES, derive_dlib_template, find_openface_pdm,
    load_template, read_openface_pdm_mean_shape, sim_scale)


def _synthetic_mean_shape():
    rng = np.random.default_rng(7)
    return rng.normal(size=(68, 3)) * 40  # (x, y, z) per landmark


def _write_pdm(path, mean_xyz, with_header=True):
    values = np.concatenate([mean_xyz[:, 0], mean_xyz[:, 1], mean_xyz[:, 2]])
    lines = ["# The mean values of the components (in mm)"]
    if with_header:
        lines += ["204", "1", "6"]
    lines += [f"{v:.6f}" for v in values]
    lines += ["# The principal components (eigenvectors) of identity or combined identity and expression model",
              "204", "2", "6"] + ["0.1 0.2"] * 204
    path.write_text("\n".join(lines) + "\n")
    return path


def test_dlib_mean_shape_is_read_from_the_shape_predictor_file():
    mean = read_mean_shape(locate_shape_predictor())
    assert mean.shape == (68, 2) and mean.dtype == np.float64
    # In detector-box units: inside about [0, 1.1], the chin (8) below the nose tip (30), left eye left of right.
    assert mean.min() > -0.1 and mean.max() < 1.2
    assert mean[8, 1] > mean[30, 1] > mean[27, 1]
    assert mean[36, 0] < mean[45, 0]


def test_reading_a_file_that_is_not_a_shape_predictor_raises_naming_it(tmp_path):
    bogus = tmp_path / "bogus.dat"
    bogus.write_bytes(b"\x01\x02" + b"\xff" * 40)
    with pytest.raises(FaceStageError, match="bogus.dat"):
        read_mean_shape(bogus)


def test_derived_template_is_centred_with_openface_rigid_radius():
    template = derive_dlib_template(read_mean_shape(locate_shape_predictor()))
    np.testing.assert_allclose(template.mean(axis=0), [0.0, 0.0], atol=1e-9)
    rigid = template[RIGID_INDICES] - template[RIGID_INDICES].mean(axis=0)
    np.testing.assert_allclose(np.sqrt((rigid ** 2).sum(axis=1).mean()), OPENFACE_RIGID_RMS_RADIUS, rtol=1e-12)
    # At scale 0.7 the jaw (0 to 16) spans most of a 112-px crop, as OpenFace's crops do.
    jaw_px = (template[16, 0] - template[0, 0]) * sim_scale(112)
    assert 95 < jaw_px < 110


def test_sim_scale_follows_face_size():
    assert sim_scale(112) == pytest.approx(0.7)
    assert sim_scale(224) == pytest.approx(1.4)


def test_pdm_reader_returns_x_and_y_of_the_first_matrix(tmp_path):
    mean = _synthetic_mean_shape()
    path = _write_pdm(tmp_path / OPENFACE_PDM_FILE, mean)
    np.testing.assert_allclose(read_openface_pdm_mean_shape(path), mean[:, :2], atol=1e-6)


def test_pdm_reader_tolerates_bare_values_without_matrix_header(tmp_path):
    mean = _synthetic_mean_shape()
    path = _write_pdm(tmp_path / "bare.txt", mean, with_header=False)
    np.testing.assert_allclose(read_openface_pdm_mean_shape(path), mean[:, :2], atol=1e-6)


def test_pdm_reader_rejects_wrong_sizes_and_text(tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("# mean\n10\n1\n6\n" + "1.0\n" * 10)
    with pytest.raises(FaceStageError, match="short.txt.*10x1"):
        read_openface_pdm_mean_shape(short)
    text = tmp_path / "text.txt"
    text.write_text("hello world\n")
    with pytest.raises(FaceStageError, match="text.txt"):
        read_openface_pdm_mean_shape(text)


def test_openface_pdm_is_found_in_openface_binary_tree(tmp_path):
    bin_dir = tmp_path / "build" / "bin"
    (bin_dir / "AU_predictors").mkdir(parents=True)
    pdm = _write_pdm(bin_dir / "AU_predictors" / OPENFACE_PDM_FILE, _synthetic_mean_shape())
    executable = bin_dir / "FeatureExtraction"
    executable.write_text("")
    assert find_openface_pdm(str(bin_dir)) == pdm
    assert find_openface_pdm(str(executable)) == pdm
    assert find_openface_pdm(str(pdm)) == pdm
    assert find_openface_pdm(str(tmp_path / "elsewhere")) is None


def test_load_template_uses_openface_pdm_exactly_when_given(tmp_path):
    mean = _synthetic_mean_shape()
    _write_pdm(tmp_path / OPENFACE_PDM_FILE, mean)
    np.testing.assert_allclose(load_template(str(tmp_path), np.zeros((68, 2))), mean[:, :2], atol=1e-6)
    with pytest.raises(FaceStageError, match="no In-the-wild_aligned_PDM_68.txt"):
        load_template(str(tmp_path / "missing"), np.zeros((68, 2)))
