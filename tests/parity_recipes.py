"""Generators from the parity README (section 1): smooth textures and seeded state dicts.

They rebuild the inputs and weights of the reference cases so that only small expected outputs are
committed under ``tests/data/parity``.
"""
from typing import Dict, Tuple

import numpy as np
import torch

WaveParams = Tuple[np.ndarray, np.ndarray, np.ndarray]


def wave_params(rng: np.random.Generator, n: int) -> WaveParams:
    """Draws ``n`` plane waves: frequencies (n, 2) as (fy, fx) in cycles/pixel, phases (n,), amplitudes (n,)."""
    freqs = rng.uniform(-0.25, 0.25, size=(n, 2))
    phases = rng.uniform(0.0, 2 * np.pi, size=n)
    amps = rng.uniform(0.5, 1.0, size=n)
    return freqs, phases, amps


def render(params: WaveParams, height: int, width: int, dy: float = 0.0, dx: float = 0.0) -> np.ndarray:
    """Samples the texture shifted by (dy, dx) pixels; returns uint8 (height, width), indexed [row y, col x]."""
    freqs, phases, amps = params
    y = np.arange(height)[:, None] - dy
    x = np.arange(width)[None, :] - dx
    field = np.zeros((height, width))
    for k in range(len(amps)):
        field = field + amps[k] * np.cos(2 * np.pi * (freqs[k, 0] * y + freqs[k, 1] * x) + phases[k])
    value = 0.5 + 0.5 * field / amps.sum()
    return np.clip(np.round(value * 255.0), 0, 255).astype(np.uint8)


def gen_state_dict(template: Dict[str, torch.Tensor], seed: int) -> Dict[str, torch.Tensor]:
    """Seeded weights for every key of ``template`` (a model's state_dict), drawn in sorted key order."""
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
