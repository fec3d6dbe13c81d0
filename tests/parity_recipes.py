"""Generators from the parity README (section 1): smooth textures and seeded state dicts.

They rebuild the inputs and weights of the reference cases so that only small expected outputs are
committed under ``tests/data/parity``. ``gen_state_dict`` lives in ``mimamo_ops.weights.standins`` (the demo's
stand-in weights are the same draws) and is re-exported here.
"""
from typing import Tuple

import numpy as np

from mimamo_ops.weights.standins import gen_state_dict  # pylint: disable=unused-import  # the recipe's weights

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
