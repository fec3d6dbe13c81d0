"""Deterministic stand-in weights in the official file formats, for running the pipeline without the real ones.

The values are the parity recipe's seeded draws (the ``shared/parity`` README, section 1.3): every tensor of a
model's state_dict is drawn in sorted key order from ``numpy.random.default_rng(seed)``. They exercise every
stage exactly as the official weights do, but the valence/arousal they give mean nothing.

The stand-in checkpoint carries :data:`STAND_IN_KEY` beside ``state_dict`` and ``epoch`` (the loader ignores
other keys), so a run can say in its Parquet metadata that its numbers are not MIMAMO-Net's
(:func:`describe_weights`).
"""
import os
from pathlib import Path
from typing import Dict, Mapping, Tuple, Union

import numpy as np
import torch

from mimamo_ops.model.checkpoints import BACKBONE, MIMAMO, expected_shapes, read_torch_file
from mimamo_ops.weights.cache import FILENAMES

__all__ = ["STAND_IN_KEY", "STAND_IN_NOTE", "OFFICIAL_NOTE", "gen_state_dict", "seeded_state_dict",
           "write_stand_in_weights", "describe_weights"]

PathLike = Union[str, os.PathLike]
STAND_IN_KEY = "mimamo_stand_in"
STAND_IN_NOTE = ("stand-in, not MIMAMO-Net: deterministic seeded weights, so these valence/arousal numbers mean "
                 "nothing; get the real weights with `mimamo weights fetch` (or `mimamo weights import FILE`)")
OFFICIAL_NOTE = "the weight files named in mimamo.checkpoint and mimamo.backbone (SHA-256 beside them)"
SEEDS = {MIMAMO: 3003, BACKBONE: 4004}  # the parity recipe's seeds


def gen_state_dict(template: Mapping[str, torch.Tensor], seed: int) -> Dict[str, torch.Tensor]:
    """Seeded weights for every key of ``template`` (a model's state_dict), drawn in sorted key order.

    Batch-norm statistics and 1-D weights are drawn near their trained ranges, other tensors with a fan-in
    scaled normal, so activations stay finite through the whole network.

    Returns:
        float32 tensors with the template's shapes (int64 zeros for ``num_batches_tracked``).
    """
    rng = np.random.default_rng(seed)
    out = {}
    for key in sorted(template):
        shape = tuple(template[key].shape)
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros(shape, dtype=torch.int64)
            continue
        if key.endswith("running_mean"):
            value = rng.normal(0.0, 0.1, size=shape)
        elif key.endswith("running_var"):
            value = rng.uniform(0.5, 1.5, size=shape)
        elif len(shape) == 1 and key.endswith(".weight"):
            value = rng.uniform(0.5, 1.5, size=shape)
        elif len(shape) == 1:
            value = rng.normal(0.0, 0.05, size=shape)
        else:
            value = rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[1:])), size=shape)
        out[key] = torch.from_numpy(value.astype(np.float32))
    return out


def seeded_state_dict(kind: str, seed: int) -> Dict[str, torch.Tensor]:
    """The recipe's seeded weights for ``kind`` (``checkpoints.MIMAMO`` or ``BACKBONE``), keyed as the official file."""
    template = {key: torch.empty(shape) for key, shape in expected_shapes(kind).items()}
    return gen_state_dict(template, seed)


def write_stand_in_weights(folder: PathLike) -> Tuple[Path, Path]:
    """Writes (once) the stand-in ``model_weights.pth.tar`` and ``resnet50_ferplus_dag.pth`` into ``folder``.

    The checkpoint is saved as the official one most likely is (legacy pre-1.6 serialisation, a dict with
    ``state_dict`` and ``epoch``) plus :data:`STAND_IN_KEY`; the backbone as a bare state_dict (about 94 MB).

    Returns:
        (checkpoint, backbone) paths.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint, backbone = folder / FILENAMES[MIMAMO], folder / FILENAMES[BACKBONE]
    if not checkpoint.is_file():
        payload = {"state_dict": seeded_state_dict(MIMAMO, SEEDS[MIMAMO]), "epoch": 0, STAND_IN_KEY: STAND_IN_NOTE}
        torch.save(payload, checkpoint, _use_new_zipfile_serialization=False)
    if not backbone.is_file():
        torch.save(seeded_state_dict(BACKBONE, SEEDS[BACKBONE]), backbone)
    return checkpoint, backbone


def describe_weights(checkpoint: PathLike) -> str:
    """What the weights of a run are, for its metadata: :data:`STAND_IN_NOTE` for stand-ins, else :data:`OFFICIAL_NOTE`."""
    payload = read_torch_file(checkpoint)
    if isinstance(payload, Mapping) and payload.get(STAND_IN_KEY):
        return str(payload[STAND_IN_KEY])
    return OFFICIAL_NOTE
