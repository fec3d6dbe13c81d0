"""Fixtures shared by every test package: seeded weights saved in the official file formats."""
import os
from pathlib import Path
from typing import Tuple

import pytest
import torch

from mimamo_ops.model.checkpoints import BACKBONE, MIMAMO
from mimamo_ops.runtime.openvino_models import COMPILED_CACHE_ENV
from mimamo_ops.weights.standins import seeded_state_dict


@pytest.fixture(scope="session")
def synthetic_weights(tmp_path_factory) -> Tuple[Path, Path]:
    """(checkpoint, backbone): seeded weights saved as the official files are (spec 5.1, 5.2).

    The checkpoint uses the legacy (pre-1.6) serialisation that the 2019/2020 file most likely has.
    """
    directory = tmp_path_factory.mktemp("weights")
    checkpoint = directory / "model_weights.pth.tar"
    torch.save({"state_dict": seeded_state_dict(MIMAMO, 3003), "epoch": 1}, checkpoint,
               _use_new_zipfile_serialization=False)
    backbone = directory / "resnet50_ferplus_dag.pth"
    torch.save(seeded_state_dict(BACKBONE, 4004), backbone)
    return checkpoint, backbone


@pytest.fixture(scope="session", autouse=True)
def compiled_backbone_cache(tmp_path_factory) -> Path:
    """One cache of converted backbones for the whole session (and the worker processes tests start), so each
    seeded weight set is converted to OpenVINO once, never into the user's cache."""
    directory = tmp_path_factory.mktemp("compiled-backbones")
    previous = os.environ.get(COMPILED_CACHE_ENV)
    os.environ[COMPILED_CACHE_ENV] = str(directory)
    yield directory
    if previous is None:
        os.environ.pop(COMPILED_CACHE_ENV, None)
    else:
        os.environ[COMPILED_CACHE_ENV] = previous
