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

from mimamo_ops.faces import DlibFaceExtractor, FaceConfig, MtcnnFaceExtractor
from mimamo_ops.faces.evaluation import load_labelled_images
from mimamo_ops.faces.shots import ShotCutDetector
from mimamo_ops.video import iter_frames
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
