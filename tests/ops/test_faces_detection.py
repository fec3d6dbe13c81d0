"""Detection on the labelled real photographs (tests/data/faces): recall at IoU 0.5 and false faces, per stage."""
import json
from pathlib import Path

import joblib
import numpy as np
import pytest

from mimamo_ops.errors import FaceStageError
from mimamo_ops.faces.alignment import build_warp_matrix, transform_points
from mimamo_ops.faces.dlib_stage import DlibFaceExtractor
from mimamo_ops.faces.evaluation import load_labelled_images, score_detections
from mimamo_ops.faces.mtcnn_model import read_weight_list
from mimamo_ops.faces.mtcnn_stage import MtcnnFaceExtractor
from mimamo_ops.faces.records import FaceConfig
from mimamo_ops.faces.tracking import box_iou_matrix, landmark_box

LABELS = Path(__file__).resolve().parents[1] / "data" / "faces" / "labels.json"


def turned(face: dict) -> bool:
    return face["pose"] != "frontal"


def small_or_dim(face: dict) -> bool:
    return face["small"] or face["dim"]


@pytest.fixture(scope="module")
def images():
    return load_labelled_images(LABELS)


@pytest.fixture(scope="module")
def mtcnn_score(images):
    return score_detections(images, MtcnnFaceExtractor(FaceConfig()).find_faces)


@pytest.fixture(scope="module")
def hog_score(images):
    return score_detections(images, DlibFaceExtractor(FaceConfig(backend="dlib")).find_faces)


def test_labelled_set_has_the_faces_the_issue_asks_for(images):
    faces = [face for image in images for face in image.faces]
    assert len(faces) >= 30
    assert sum(turned(face) for face in faces) >= 8
    assert sum(len(image.faces) >= 2 for image in images) >= 4
    assert sum(small_or_dim(face) for face in faces) >= 4
    assert any(len(image.faces) == 0 for image in images), "a photo without a face (dogs) checks false faces"
    assert all(path.stat().st_size < 2_000_000 for path in LABELS.parent.iterdir())


def test_default_stage_finds_nine_in_ten_faces_also_turned_small_and_dim(images, mtcnn_score, hog_score):
    recall = mtcnn_score.recall(images)
    figures = (f"mtcnn recall {recall:.3f} (turned {mtcnn_score.recall(images, turned):.3f}, small/dim "
               f"{mtcnn_score.recall(images, small_or_dim):.3f}); hog recall {hog_score.recall(images):.3f} "
               f"(turned {hog_score.recall(images, turned):.3f}, small/dim "
               f"{hog_score.recall(images, small_or_dim):.3f})")
    assert recall >= 0.9, figures
    assert mtcnn_score.recall(images, turned) >= 0.9, figures
    assert mtcnn_score.recall(images, small_or_dim) >= 0.9, figures
    assert recall > hog_score.recall(images) + 0.2, "the HOG stage misses the small faces: " + figures


def test_default_stage_reports_at_most_one_false_face_per_ten_images(mtcnn_score):
    assert mtcnn_score.false_faces_per_image() <= 0.1, mtcnn_score.false_faces
    assert mtcnn_score.false_faces["dogs"] == 0


def test_weight_reader_refuses_pickles_holding_anything_but_arrays(tmp_path):
    arrays = tmp_path / "arrays.lz4"
    joblib.dump([np.arange(6, dtype=np.float32).reshape(2, 3)], arrays, compress="lz4")
    np.testing.assert_array_equal(read_weight_list(arrays)[0], np.arange(6, dtype=np.float32).reshape(2, 3))
    hostile = tmp_path / "hostile.lz4"
    joblib.dump([np.zeros(2), Path("/etc/passwd")], hostile, compress="lz4")
    with pytest.raises(FaceStageError, match="refusing global pathlib"):
        read_weight_list(hostile)


def test_labels_name_their_source_for_every_image():
    entries = json.loads(LABELS.read_text())["images"]
    assert all(entry["source"] and entry["faces"] is not None for entry in entries.values())


# OpenVINO against eager torch on the labelled photos (tests/data/faces), measured 2026-12-06 on a 2-core AMD EPYC
# (Zen 3, AVX2) with OpenVINO 2026.4 and torch 2.13, also with oneDNN capped at SSE4.1 and ATen's default kernels;
# a Zen 4 (AVX-512, AVX512_BF16) showed the same worst box (0.016 px on 3ddfa_emma): the two runtimes' float
# rounding differs by their own kernels, not by the CPU.
#   boxes and five points: worst 1.2e-4 of the box side (0.016 px on a 137 px face); scores: worst 1.9e-6.
#   fitted landmarks: 79 of 82 faces identical; dlib's predictor starts from the box rounded to whole pixels, so an
#   edge within 0.016 px of a half pixel can round the other way; the other 3 differ by up to 3.4 px in the crop,
#   within the stage's own frame-to-frame move on these stills (up to 3.95 px, test_faces_crop_agreement.py).
BOX_SIDE_SHARE = 1e-3  # 8x the worst measured deviation
SCORE_ATOL = 1e-4
CROP_CORNERS_MAX_PX = 4.0
CROP_CORNERS_MEDIAN_PX = 0.5
_CORNERS = np.array([36, 39, 42, 45, 48, 54])  # iBUG-68 eye and mouth corners


def test_openvino_and_torch_runtimes_of_mtcnn_find_the_same_faces(images):
    """The default CPU runtime (OpenVINO) against eager torch, on every labelled photo: the same detections (boxes
    and five points within ``BOX_SIDE_SHARE`` of the face's size, probabilities within ``SCORE_ATOL``), so the same
    faces fitted, and aligned crops whose eye and mouth corners agree (see the measurement above)."""
    by_runtime = {runtime: MtcnnFaceExtractor(FaceConfig(runtime=runtime)) for runtime in ("openvino", "torch")}
    assert by_runtime["openvino"].detector.runtime == "openvino" and by_runtime["torch"].detector.runtime == "torch"
    corner_px = []
    for image in images:
        rgb = image.read_rgb()
        fast, plain = (extractor.detector.detect(rgb) for extractor in by_runtime.values())
        assert len(fast) == len(plain), image.name
        side = np.maximum(plain.boxes[:, 2] - plain.boxes[:, 0], plain.boxes[:, 3] - plain.boxes[:, 1])
        box_share = np.abs(fast.boxes - plain.boxes).max(axis=1, initial=0) / side
        points_share = np.abs(fast.points - plain.points).max(axis=(1, 2), initial=0) / side
        assert np.all(box_share <= BOX_SIDE_SHARE), (image.name, box_share)
        assert np.all(points_share <= BOX_SIDE_SHARE), (image.name, points_share)
        np.testing.assert_allclose(fast.scores, plain.scores, atol=SCORE_ATOL, err_msg=image.name)
        fits = [extractor.find_faces(rgb) for extractor in by_runtime.values()]
        assert len(fits[0]) == len(fits[1]), image.name
        template = by_runtime["torch"].template
        for (fast_points, _), (plain_points, _) in zip(*fits):
            overlap = box_iou_matrix(landmark_box(fast_points), landmark_box(plain_points))[0, 0]
            assert overlap > 0.9, image.name
            fast_crop = transform_points(build_warp_matrix(fast_points, template, 112), fast_points[_CORNERS])
            plain_crop = transform_points(build_warp_matrix(plain_points, template, 112), plain_points[_CORNERS])
            corner_px.append(float(np.linalg.norm(fast_crop - plain_crop, axis=1).max()))
    assert max(corner_px) <= CROP_CORNERS_MAX_PX, sorted(corner_px)[-5:]
    assert np.median(corner_px) <= CROP_CORNERS_MEDIAN_PX, np.median(corner_px)
