"""Shot cuts and person ids on clips cut together from real photographs (tests/data/faces), encoded with PyAV.

The clip shows Biden (one photo), cuts to Obama (another photo), then cuts back to Biden in a third photo, each
shot panning slowly. One id per person: the cut ends the tracks, the new person gets a new ``face_id``, Biden
gets his first ``face_id`` back by his face descriptor; every shot is its own ``track_id``.
"""
from pathlib import Path
from typing import List

import cv2
import numpy as np
import pytest

from mimamo_ops.decoding.video import iter_frames
from mimamo_ops.faces.dlib_stage import DlibFaceExtractor
from mimamo_ops.faces.evaluation import load_labelled_images
from mimamo_ops.faces.identity import AppearanceWatch, appearance_signature
from mimamo_ops.faces.mtcnn_stage import MtcnnFaceExtractor
from mimamo_ops.faces.records import FaceConfig
from mimamo_ops.faces.shots import ShotCutDetector
from tests import clips

LABELS = Path(__file__).resolve().parents[1] / "data" / "faces" / "labels.json"
FRAME_SIZE = (640, 360)  # (width, height)
SHOT_FRAMES = 16
# (image, face index) of each shot: Biden, Obama, Biden in another photo.
SHOTS = [("fr_biden", 0), ("fr_two_people", 1), ("fr_two_people", 0)]


def shot_frames(image_name: str, face: int, n_frames: int) -> List[np.ndarray]:
    """A slow pan over one labelled face: uint8 (360, 640, 3) RGB frames, the face about 150 px tall."""
    image = {item.name: item for item in load_labelled_images(LABELS)}[image_name]
    rgb = image.read_rgb()
    x0, y0, x1, y1 = image.boxes_px[face]
    scale = 150.0 / (y1 - y0)
    frames = []
    for k in range(n_frames):
        shift = 1.5 * k
        centre = ((x0 + x1) / 2, (y0 + y1) / 2)
        matrix = np.array([[scale, 0, FRAME_SIZE[0] / 2 + shift - scale * centre[0]],
                           [0, scale, FRAME_SIZE[1] / 2 - scale * centre[1]]])
        frames.append(cv2.warpAffine(rgb, matrix, FRAME_SIZE, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return frames


@pytest.fixture(scope="module")
def cut_clip(tmp_path_factory) -> Path:
    frames = [frame for name, face in SHOTS for frame in shot_frames(name, face, SHOT_FRAMES)]
    return clips.write_clip(tmp_path_factory.mktemp("cuts") / "cuts.mp4", frames)


def ids_per_shot(frames, field: str) -> List[set]:
    return [{getattr(face, field) for frame in frames[shot * SHOT_FRAMES:(shot + 1) * SHOT_FRAMES]
             for face in frame.faces} for shot in range(len(SHOTS))]


def test_cut_detector_fires_at_the_cuts_only(cut_clip):
    detector = ShotCutDetector(FaceConfig().cut_threshold)
    cuts = [frame.index for frame in iter_frames(str(cut_clip)) if detector.is_cut(frame.rgb)]
    assert cuts == [SHOT_FRAMES, 2 * SHOT_FRAMES]


@pytest.mark.parametrize("multi_face", [False, True])
def test_cut_to_another_person_gives_a_new_id_and_the_first_person_gets_theirs_back(cut_clip, multi_face):
    frames = list(MtcnnFaceExtractor(FaceConfig(multi_face=multi_face)).extract(str(cut_clip)))
    assert sum(len(frame.faces) == 1 for frame in frames) >= 0.95 * len(frames)
    assert ids_per_shot(frames, "face_id") == [{0}, {1}, {0}]
    assert ids_per_shot(frames, "track_id") == [{0}, {1}, {2}]


def test_dlib_backend_also_ends_tracks_at_cuts_and_reidentifies(cut_clip):
    frames = list(DlibFaceExtractor(FaceConfig(backend="dlib")).extract(str(cut_clip)))
    assert ids_per_shot(frames, "face_id") == [{0}, {1}, {0}]
    assert ids_per_shot(frames, "track_id") == [{0}, {1}, {2}]


def test_strict_descriptor_threshold_makes_the_returning_person_new(cut_clip):
    frames = list(MtcnnFaceExtractor(FaceConfig(reid_max_distance=0.05)).extract(str(cut_clip)))
    assert ids_per_shot(frames, "face_id") == [{0}, {1}, {2}]


DISSOLVE_AT, DISSOLVE_FRAMES, DISSOLVE_CLIP_FRAMES = 30, 12, 90


def dissolve_clip(path: Path, first: tuple, second: tuple) -> Path:
    """Two faces at the same place, the first dissolving into the second over ``DISSOLVE_FRAMES`` frames (no cut:
    the colour and layout change gradually), each panning slowly."""
    a = shot_frames(*first, DISSOLVE_CLIP_FRAMES)
    b = shot_frames(*second, DISSOLVE_CLIP_FRAMES)
    weights = np.clip((np.arange(DISSOLVE_CLIP_FRAMES) - DISSOLVE_AT + 1) / (DISSOLVE_FRAMES + 1), 0, 1)
    frames = [((1 - w) * x + w * y).round().astype(np.uint8) for w, x, y in zip(weights, a, b)]
    return clips.write_clip(path, frames)


@pytest.fixture(scope="module")
def dissolve_clips(tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("dissolves")
    return {"two people": dissolve_clip(folder / "biden_to_obama.mp4", ("fr_biden", 0), ("fr_two_people", 1)),
            "one person": dissolve_clip(folder / "biden_to_biden.mp4", ("fr_biden", 0), ("fr_two_people", 0))}


def _extractor(backend: str, multi_face: bool):
    if backend == "dlib":
        return DlibFaceExtractor(FaceConfig(backend="dlib", multi_face=multi_face))
    return MtcnnFaceExtractor(FaceConfig(multi_face=multi_face))


def test_the_dissolves_are_not_cuts(dissolve_clips):
    for path in dissolve_clips.values():
        detector = ShotCutDetector(FaceConfig().cut_threshold)
        assert not [frame.index for frame in iter_frames(str(path)) if detector.is_cut(frame.rgb)]


@pytest.mark.parametrize("backend, multi_face", [("mtcnn", False), ("mtcnn", True), ("dlib", False)])
def test_a_dissolve_to_another_person_at_the_same_place_splits_the_track_and_gives_a_new_id(
        dissolve_clips, backend, multi_face):
    frames = list(_extractor(backend, multi_face).extract(str(dissolve_clips["two people"])))
    before = {(face.face_id, face.track_id) for frame in frames[:DISSOLVE_AT] for face in frame.faces}
    after = {(face.face_id, face.track_id) for frame in frames[DISSOLVE_AT + DISSOLVE_FRAMES:]
             for face in frame.faces}
    assert before == {(0, 0)}
    assert len(after) == 1 and after.isdisjoint({0}) and not after & before
    (person, track), = after
    assert person != 0 and track != 0
    # one switch, inside the dissolve: every frame before it is the first person, every one after the second
    ids = [frame.faces[0].face_id for frame in frames if len(frame.faces) == 1]
    switch = ids.index(person)
    assert set(ids[:switch]) == {0} and set(ids[switch:]) == {person}


@pytest.mark.parametrize("backend", ["mtcnn", "dlib"])
def test_a_dissolve_between_two_photos_of_one_person_keeps_the_id_and_the_track(dissolve_clips, backend):
    extractor = _extractor(backend, False)
    frames = list(extractor.extract(str(dissolve_clips["one person"])))
    assert sum(len(frame.faces) == 1 for frame in frames) >= 0.95 * len(frames)
    assert {(face.face_id, face.track_id) for frame in frames for face in frame.faces} == {(0, 0)}


def test_appearance_watch_needs_a_lasting_change_or_a_return_and_keeps_its_gap():
    rng = np.random.default_rng(0)
    face, other = (rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(2))
    same, changed = appearance_signature(face), appearance_signature(other)
    watch = AppearanceWatch(min_similarity=0.8, min_gap_frames=5)
    assert watch.observe(7, 0, same)  # never checked
    watch.checked(7, 0, same)
    assert not any(watch.observe(7, index, same) for index in range(1, 6))
    assert not watch.observe(7, 6, changed)  # one frame unlike it: a misfit, not a change
    assert not watch.observe(7, 7, same)
    assert not watch.observe(7, 8, changed)
    assert watch.observe(7, 9, changed)  # two frames in a row
    watch.checked(7, 9, changed)
    assert not watch.observe(7, 10, same) and not watch.observe(7, 11, same)  # like an earlier check's face
    assert not watch.observe(7, 13, same)  # back after a frame away, but within the gap of the last check
    assert watch.observe(7, 20, same)  # back after frames away: the detection may be someone else
    watch.keep_only(set())
    assert watch.observe(7, 21, same)


def test_switch_distance_below_the_reid_distance_is_refused():
    with pytest.raises(ValueError, match="reid_switch_distance"):
        FaceConfig(reid_max_distance=0.6, reid_switch_distance=0.5)
