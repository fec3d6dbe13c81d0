"""The built-in face stages (``backend="mtcnn"``, the default, and ``"dlib"``) on real encoded clips
(tests/clips.py): coverage, stability, ids, bad files. Every test runs once per backend."""
import numpy as np
import pytest

from mimamo_ops.decoding.video import probe_video
from mimamo_ops.errors import VideoError
from mimamo_ops.faces.alignment import build_warp_matrix, transform_points
from mimamo_ops.faces.records import FaceConfig
from mimamo_ops.faces.stages import make_face_extractor
from mimamo_ops.faces.template import OPENFACE_PDM_FILE
from tests import clips


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("face_clips")


@pytest.fixture(scope="module", params=["mtcnn", "dlib"])
def backend(request):
    return request.param


@pytest.fixture(scope="module")
def single(backend):
    return make_face_extractor(FaceConfig(backend=backend))


@pytest.fixture(scope="module")
def multi(backend):
    return make_face_extractor(FaceConfig(backend=backend, multi_face=True))


@pytest.fixture(scope="module")
def moving_faces(clip_dir, single):
    path = clips.moving_face_clip(clip_dir / "moving.mp4", n_frames=60)
    return list(single.extract(str(path)))


def _aligned_eye_centres(extractor, face):
    matrix = build_warp_matrix(face.landmarks, extractor.template, extractor.config.face_size)
    points = transform_points(matrix, face.landmarks)
    return np.concatenate([points[36:42].mean(axis=0), points[42:48].mean(axis=0)])


def test_moving_face_is_found_in_at_least_98_percent_of_frames(moving_faces):
    assert [f.index for f in moving_faces] == list(range(60))
    with_face = sum(1 for f in moving_faces if f.faces)
    assert with_face / 60 >= 0.98, f"face in {with_face}/60 frames"
    assert all(len(f.faces) <= 1 for f in moving_faces)


def test_records_have_the_interface_shapes_dtypes_and_timestamps(moving_faces):
    for frame in moving_faces:
        assert frame.timestamp_s == pytest.approx(frame.index / 30.0, abs=1e-6)
        for face in frame.faces:
            assert face.face_id == 0
            assert face.frame_index == frame.index and face.timestamp_s == frame.timestamp_s
            assert face.aligned.shape == (112, 112, 3) and face.aligned.dtype == np.uint8
            assert face.landmarks.shape == (68, 2) and face.landmarks.dtype == np.float32
            assert 0.5 < face.confidence < 1.0
            x0, y0, x1, y1 = face.box
            assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 360
            assert x0 <= face.landmarks[:, 0].min() and face.landmarks[:, 0].max() <= x1


def test_aligned_crop_is_an_upright_face_with_eyes_level_and_centred(single, moving_faces):
    for frame in moving_faces[::5]:
        for face in frame.faces:
            left_x, left_y, right_x, right_y = _aligned_eye_centres(single, face)
            assert abs(left_y - right_y) < 2.5, "eyes are level after the similarity warp despite the head roll"
            assert abs((left_x + right_x) / 2 - 56) < 3
            assert 40 < right_x - left_x < 56
            # The crop is the face: its centre is not the textured background's grey.
            centre = face.aligned[40:72, 40:72].astype(float)
            assert centre.mean() > 100


def test_static_face_aligned_eyes_move_less_than_one_pixel(clip_dir, single):
    path = clips.static_face_clip(clip_dir / "static.mp4", n_frames=30)
    frames = list(single.extract(str(path)))
    assert all(len(f.faces) == 1 for f in frames)
    eyes = np.stack([_aligned_eye_centres(single, f.faces[0]) for f in frames])
    steps = np.abs(np.diff(eyes, axis=0)).reshape(-1, 2, 2)
    assert np.linalg.norm(steps, axis=2).max() < 1.0, f"max eye step {np.linalg.norm(steps, axis=2).max():.3f} px"


def test_two_faces_keep_their_ids_through_the_clip(clip_dir, multi):
    path = clips.two_faces_clip(clip_dir / "two.mp4", n_frames=40)
    frames = list(multi.extract(str(path)))
    assert len(frames) == 40
    assert sum(len(f.faces) == 2 for f in frames) >= 39
    ids_by_half = {}
    for frame in frames:
        for face in frame.faces:
            half = "upper" if (face.box[1] + face.box[3]) / 2 < 180 else "lower"
            ids_by_half.setdefault(half, set()).add(face.face_id)
    assert ids_by_half == {"upper": {0}, "lower": {1}} or ids_by_half == {"upper": {1}, "lower": {0}}


def test_single_face_mode_keeps_one_face_with_id_zero(clip_dir, single):
    path = clips.two_faces_clip(clip_dir / "two_single.mp4", n_frames=20)
    frames = list(single.extract(str(path)))
    assert all(len(f.faces) == 1 and f.faces[0].face_id == 0 for f in frames)


def test_no_face_clip_yields_every_frame_with_no_faces(clip_dir, single, caplog):
    path = clips.no_face_clip(clip_dir / "none.mp4", n_frames=20)
    frames = list(single.extract(str(path)))
    assert [f.index for f in frames] == list(range(20))
    assert all(f.faces == () for f in frames)
    assert "no face found" in caplog.text


@pytest.mark.parametrize("make_bad", [clips.corrupt_file, clips.empty_file, clips.not_a_video])
def test_bad_file_raises_video_error_naming_the_file(tmp_path, single, make_bad):
    path = make_bad(tmp_path / "bad_input.mp4")
    with pytest.raises(VideoError, match="bad_input.mp4"):
        list(single.extract(str(path)))


def test_truncated_file_raises_video_error_naming_the_file(tmp_path, single):
    path = clips.truncated_clip(tmp_path / "cut_short.mp4", faststart=False, n_frames=20)
    with pytest.raises(VideoError, match="cut_short.mp4"):
        list(single.extract(str(path)))


def test_mask_and_face_size_options(clip_dir, backend):
    path = clips.static_face_clip(clip_dir / "static_small.mp4", n_frames=3)
    plain = make_face_extractor(FaceConfig(backend=backend, face_size=224))
    masked = make_face_extractor(FaceConfig(backend=backend, face_size=224, mask=True))
    crop = list(plain.extract(str(path)))[0].faces[0].aligned
    crop_masked = list(masked.extract(str(path)))[0].faces[0].aligned
    assert crop.shape == crop_masked.shape == (224, 224, 3)
    assert (crop_masked[:8, :8] == 0).all() and (crop[:8, :8] > 0).any()  # corners outside the face hull
    np.testing.assert_array_equal(crop_masked[112, 112], crop[112, 112])  # the nose is kept
    assert (crop_masked.sum(axis=2) == 0).mean() > 0.15


def test_openface_pdm_template_is_used_when_given(tmp_path, clip_dir, backend):
    # A PDM whose mean shape is the default template scaled by 1.25 gives crops zoomed by 1.25.
    default = make_face_extractor(FaceConfig(backend=backend))
    mean = np.zeros((68, 3))
    mean[:, :2] = default.template * 1.25
    values = np.concatenate([mean[:, 0], mean[:, 1], mean[:, 2]])
    (tmp_path / OPENFACE_PDM_FILE).write_text("# mean\n204\n1\n6\n" + "\n".join(f"{v:.8f}" for v in values) + "\n")
    with_pdm = make_face_extractor(FaceConfig(backend=backend, template_path=str(tmp_path)))
    np.testing.assert_allclose(with_pdm.template, default.template * 1.25, atol=1e-6)
    path = clips.static_face_clip(clip_dir / "static_pdm.mp4", n_frames=2)
    face_default = list(default.extract(str(path)))[0].faces[0]
    face_pdm = list(with_pdm.extract(str(path)))[0].faces[0]
    eye_gap = lambda e, f: np.linalg.norm(np.subtract(*_aligned_eye_centres(e, f).reshape(2, 2)))  # noqa: E731
    assert eye_gap(with_pdm, face_pdm) / eye_gap(default, face_default) == pytest.approx(1.25, rel=0.02)


def test_rotated_clip_faces_come_back_upright(clip_dir, single):
    path = clips.rotated_clip(clip_dir / "rotated.mp4", n_frames=10)
    assert probe_video(str(path)).width == 640
    frames = list(single.extract(str(path)))
    assert sum(bool(f.faces) for f in frames) >= 9


def test_two_fast_faces_keep_their_ids_when_moving_further_than_their_size_per_frame(clip_dir, multi):
    path = clips.two_faces_clip(clip_dir / "two_fast.mp4", n_frames=10)  # about 50 px per frame
    frames = list(multi.extract(str(path)))
    assert [sorted(face.face_id for face in f.faces) for f in frames] == [[0, 1]] * 10


def test_vfr_clip_faces_carry_the_frame_timestamps(clip_dir, single):
    path = clips.vfr_clip(clip_dir / "vfr.mp4", n_frames=12)
    frames = list(single.extract(str(path)))
    np.testing.assert_allclose([f.timestamp_s for f in frames], clips.vfr_timestamps(12), atol=1e-3)
    assert all(face.timestamp_s == f.timestamp_s for f in frames for face in f.faces)


@pytest.fixture(scope="module")
def face_gap_clip(clip_dir):
    """10 frames with a face, 10 of background only, 10 with the face again."""
    face_frames = clips.moving_face_frames(20)
    background = clips.textured_background((640, 360), seed=1)
    frames = face_frames[:10] + [background] * 10 + face_frames[10:]
    return clips.write_clip(clip_dir / "gap.mp4", frames)


def test_vanished_face_gives_empty_frames_and_is_found_again(face_gap_clip, single):
    frames = list(single.extract(str(face_gap_clip)))
    assert [len(f.faces) for f in frames[10:20]] == [0] * 10, "the quality check rejects fits on background"
    assert sum(len(f.faces) for f in frames[:10]) == 10 and sum(len(f.faces) for f in frames[20:]) == 10
    assert {face.face_id for f in frames for face in f.faces} == {0}


def test_track_ends_after_the_grace_period_and_the_person_returns_with_their_id(face_gap_clip, backend):
    ids = lambda config: [[(face.face_id, face.track_id) for face in f.faces]  # noqa: E731
                          for f in make_face_extractor(config).extract(str(face_gap_clip))]
    past_grace = ids(FaceConfig(backend=backend, multi_face=True, max_missing_frames=3))
    assert past_grace[:10] == [[(0, 0)]] * 10, "one person, one track"
    assert past_grace[20:] == [[(0, 1)]] * 10, "a new track, re-identified as the same person"


@pytest.mark.parametrize("kwargs, message", [
    ({"face_size": 7}, "face_size"), ({"detect_every": 0}, "detect_every"),
    ({"max_missing_frames": -1}, "max_missing_frames"), ({"upsample": 3}, "upsample"),
    ({"min_track_iou": 1.5}, "min_track_iou"),
])
def test_face_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FaceConfig(**kwargs)
