"""Fixtures shared by every test package: seeded weights saved in the official file formats.

Under pytest-xdist (``make test`` runs one worker per CPU) each worker is pinned to its share of the CPUs first.
"""
import os
from pathlib import Path
from typing import Tuple


def _pin_xdist_worker() -> None:
    """Keeps pytest-xdist's workers off each other's CPUs: worker ``gwK`` of N (and every thread and process it
    starts afterwards) runs on the K-th of N equal shares of this process's CPUs.

    The pipeline sizes its thread pools from the affinity mask (``mimamo_ops.runtime.threads``), so each worker
    then runs one thread per CPU of its share. Unpinned, N workers on N CPUs each start N threads in OpenVINO and
    torch, the oversubscription that ``threads`` measured 1.8x slower. Runs before torch is imported, so its
    pools start at the share's size too.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    cpus = sorted(os.sched_getaffinity(0))
    if not worker.startswith("gw") or count < 2 or len(cpus) < count:
        return
    share = len(cpus) // count
    index = int(worker[2:])
    os.sched_setaffinity(0, cpus[index * share:(index + 1) * share])


_pin_xdist_worker()

# pylint: disable=wrong-import-position
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
