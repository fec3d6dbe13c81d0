"""Shared fixtures of the pipeline tests: synthetic weights in the official formats and a folder of real clips."""
from pathlib import Path
from typing import Dict, Tuple

import pytest
import torch

from mimamo_ops.checkpoints import BACKBONE, MIMAMO, expected_shapes
from tests import clips
from tests.parity_recipes import gen_state_dict

CLIP_FRAMES = 24  # short clips keep the module fast; with --length 16 each track still has two snippets


def _seeded_state_dict(kind: str, seed: int) -> Dict[str, torch.Tensor]:
    template = {key: torch.empty(shape) for key, shape in expected_shapes(kind).items()}
    return gen_state_dict(template, seed)


@pytest.fixture(scope="session")
def synthetic_weights(tmp_path_factory) -> Tuple[Path, Path]:
    """(checkpoint, backbone): seeded weights saved as the official files are (spec 5.1, 5.2)."""
    directory = tmp_path_factory.mktemp("weights")
    checkpoint = directory / "model_weights.pth.tar"
    torch.save({"state_dict": _seeded_state_dict(MIMAMO, 3003), "epoch": 1}, checkpoint)
    backbone = directory / "resnet50_ferplus_dag.pth"
    torch.save(_seeded_state_dict(BACKBONE, 4004), backbone)
    return checkpoint, backbone


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
