"""Shared fixtures of the pipeline tests: a folder of real clips (the weights come from tests/conftest.py)."""
from pathlib import Path

import pytest

from tests import clips

CLIP_FRAMES = 24  # short clips keep the module fast; with --length 16 each track still has two snippets


@pytest.fixture(scope="session")
def clip_folder(tmp_path_factory) -> Path:
    """Two good clips (one with two faces), a corrupt file, a zero-byte file and a clip without a face."""
    folder = tmp_path_factory.mktemp("clips")
    clips.moving_face_clip(folder / "one_face.mp4", n_frames=CLIP_FRAMES)
    clips.two_faces_clip(folder / "two_faces.mp4", n_frames=CLIP_FRAMES)
    clips.corrupt_file(folder / "corrupt.mp4")
    clips.empty_file(folder / "empty.mp4")
    clips.no_face_clip(folder / "no_face.mp4", n_frames=CLIP_FRAMES)
    return folder
