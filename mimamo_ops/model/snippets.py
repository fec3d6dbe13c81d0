"""Snippet sampling, temporal windows, phase-image preparation and stitching (spec 6 and 9).

Positions are indices into a track's list of N usable faces (the frames where a face was found), not
video frame numbers: the original model sees only successful frames, in order (spec 2.5, 6.4).
"""
from typing import Iterable, List, Sequence, Tuple

import numpy as np
from PIL import Image

SNIPPET_LENGTH = 64
SNIPPET_STRIDE = 64
NUM_PHASE = 12  # phase differences per window; the window holds NUM_PHASE + 1 = 13 faces
PHASE_SIZE = 48  # side of the grey phase images, pixels
GRU_SEQUENCE_SNIPPETS = 64  # snippets per GRU sequence in the authors' reference run (spec 4.4)


def snippet_ranges(num_faces: int, length: int = SNIPPET_LENGTH, stride: int = SNIPPET_STRIDE) -> List[Tuple[int, int]]:
    """Half-open [start, end) position ranges of the snippets of one track (spec 6.2).

    Full snippets start at 0, stride, 2*stride, ...; if they stop short of the end, one more snippet is
    aligned to the end and overlaps its predecessor. A track shorter than ``length`` is one snippet.

    Args:
        num_faces: N, the number of faces in the track.
        length: snippet length L in faces.
        stride: step between snippet starts in faces.

    Returns:
        The S ranges, in the order the original feeds them to the network.
    """
    if length < 1 or stride < 1:
        raise ValueError(f"snippet length and stride must be >= 1, got length={length}, stride={stride}")
    if num_faces <= 0:
        return []
    if num_faces < length:
        length = stride = num_faces
    ranges = []
    start = 0
    while start + length <= num_faces:
        ranges.append((start, start + length))
        start += stride
    if ranges[-1][1] < num_faces:
        ranges.append((num_faces - length, num_faces))
    return ranges


def window_positions(positions: np.ndarray, num_faces: int, num_phase: int = NUM_PHASE) -> np.ndarray:
    """The temporal window of each position, clamped to the track (spec 6.4).

    Args:
        positions: int64 (P,), positions in [0, N).
        num_faces: N, the number of faces in the track.
        num_phase: K; the window is positions p - K/2 ... p + K/2.

    Returns:
        int64 (P, K + 1), clamped to [0, N - 1].
    """
    half = num_phase // 2
    offsets = np.arange(-half, num_phase - half + 1, dtype=np.int64)
    return np.clip(np.asarray(positions, dtype=np.int64)[:, None] + offsets[None, :], 0, num_faces - 1)


def prepare_phase_images(faces: Sequence[np.ndarray], size: int = PHASE_SIZE) -> np.ndarray:
    """Grey, Lanczos-resized face images for the phase stream (spec 6.5).

    Uses Pillow on purpose: its ``convert('L')`` luma and LANCZOS resampler (with 8-bit intermediates) are
    what the original computed, bit for bit.

    Args:
        faces: F aligned faces, each uint8 (H, W, 3) RGB.
        size: output side in pixels.

    Returns:
        float32 (F, size, size) in [0, 1].
    """
    grey = np.empty((len(faces), size, size), dtype=np.uint8)
    for i, face in enumerate(faces):
        image = Image.fromarray(np.ascontiguousarray(face), mode="RGB").convert("L")
        grey[i] = np.asarray(image.resize((size, size), Image.LANCZOS))
    return grey.astype(np.float32) / np.float32(255)


def chunk_snippets(num_snippets: int, sequence_snippets: int = GRU_SEQUENCE_SNIPPETS) -> List[range]:
    """Groups consecutive snippet indices into GRU sequences of at most ``sequence_snippets`` (spec 4.4)."""
    if sequence_snippets < 1:
        raise ValueError(f"gru_sequence_snippets must be >= 1, got {sequence_snippets}")
    return [range(s, min(s + sequence_snippets, num_snippets)) for s in range(0, num_snippets, sequence_snippets)]


def stitch_ranges(num_faces: int, ranges: Iterable[Tuple[int, int]], predictions: Iterable[np.ndarray]) -> np.ndarray:
    """Writes each snippet's predictions into one per-face array; later snippets overwrite (spec 9.1).

    Args:
        num_faces: N.
        ranges: [start, end) of each snippet, in network order.
        predictions: float32 (end - start, 2) per snippet, columns (valence, arousal).

    Returns:
        float32 (N, 2).
    """
    out = np.zeros((num_faces, 2), dtype=np.float32)
    for (start, end), values in zip(ranges, predictions):
        out[start:end] = values
    return out
