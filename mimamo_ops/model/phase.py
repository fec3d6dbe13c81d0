"""Phase-difference features of MIMAMO-Net's temporal stream (spec sections 7.1, 7.7 and 8).

The original rebuilds the pyramid of every face once per 13-frame window that contains it (up to 13
times per snippet). Here the per-frame work (symmetric extension, pyramid, crop, phase, magnitude and
the blurred magnitude) is done once per frame by ``PhaseDifferenceExtractor.frame_coefficients``; only
what depends on the window (the one-sided unwrap, the blur of the amplitude-weighted unwrapped phase,
the temporal difference, the spatial centring and the clamp) runs per window in
``window_differences`` (spec 10.1 item 1).
"""
import dataclasses
import math
from typing import Sequence, Tuple

import torch

from mimamo_ops.model.pyramid import ComplexSteerablePyramid

NUM_PHASE = 12  # K: temporal differences per snippet frame
WINDOW = NUM_PHASE + 1  # T: frames in a phase window (f - 6 .. f + 6)
PHASE_SIZE = 48  # side of the grey phase images, in pixels
PYRAMID_HEIGHT = 4
PYRAMID_NBANDS = 2
PYRAMID_SCALE_FACTOR = 2.0
PYRAMID_LEVELS = (1, 2)
BLUR_RADIUS_PX = 5  # the 11 x 11 Gaussian kernel spans -5 .. 5
BLUR_SIGMA_PX = 2.0
MAGNITUDE_EPS = 1e-10
CLAMP_RAD = 5 * math.pi
# Windows processed together: on a CPU a small chunk keeps the working set in cache; an accelerator
# wants large kernels.
_CPU_WINDOW_CHUNK = 8
_ACCELERATOR_WINDOW_CHUNK = 512


def gaussian_taps() -> torch.Tensor:
    """1-D factor of the 11 x 11 blur kernel ``G[i, j] = exp(-(i^2 + j^2) / (2 * 2^2))`` (spec 8.3).

    ``G`` is the outer product of these taps. It is not normalised: the normalisation cancels in the
    amplitude-weighted ratio.

    Returns:
        float32 (11,), ``exp(-k^2 / 8)`` for ``k = -5 .. 5``.
    """
    k = torch.arange(-BLUR_RADIUS_PX, BLUR_RADIUS_PX + 1, dtype=torch.float64)
    return torch.exp(-(k**2) / (2 * BLUR_SIGMA_PX**2)).to(torch.float32)


def blur_matrix(size_px: int) -> torch.Tensor:
    """Banded Toeplitz matrix ``B`` with ``B @ X @ B`` = 2-D correlation of X with G, zero padding 5.

    ``B[i, j] = g[j - i + 5]`` for ``|j - i| <= 5``, else 0, where ``g`` is ``gaussian_taps()``; the
    rows near the border simply lose the taps that would fall on the zero padding (spec 8.3).

    Args:
        size_px: side of the square maps to blur.

    Returns:
        float32 (size_px, size_px), symmetric.
    """
    taps = gaussian_taps()
    idx = torch.arange(size_px)
    offset = idx[None, :] - idx[:, None]
    inside = offset.abs() <= BLUR_RADIUS_PX
    return torch.where(inside, taps[(offset + BLUR_RADIUS_PX).clamp(0, 2 * BLUR_RADIUS_PX)], 0.0)


def symmetric_extension(images: torch.Tensor) -> torch.Tensor:
    """Mirror-extends images to twice their size (spec 7.1).

    Args:
        images: (..., H, W), index ``[row y, col x]``.

    Returns:
        (..., 2H, 2W): ``[[I, I flipped left-right], [I flipped up-down, I flipped both ways]]``, so the
        input occupies the top-left quadrant.
    """
    top = torch.cat([images, images.flip(-1)], dim=-1)
    return torch.cat([top, top.flip(-2)], dim=-2)


def unwrap_corrections(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Per-step correction of the original's one-sided temporal unwrap, quirk included (spec 8.2).

    With ``d = after - before``: ``w = fmod(d + pi, 2 pi) - pi`` using C-style ``torch.fmod`` (the
    result takes the sign of the dividend, parity README 3.1); ``w = pi`` where ``w == -pi and d > 0``;
    the correction is ``w - d``, zeroed where ``|d| < pi``. Net effect: a jump above +pi gets about
    -2 pi, a jump below -pi is **not** corrected. The unwrapped phase of frame ``t`` of a window is
    its phase plus the sum of the corrections of the window's steps ``0 .. t-1``.

    Args:
        before: float32 phase of the earlier frame, radians, any shape.
        after: float32 phase of the next frame, radians, same shape.

    Returns:
        float32, same shape, radians: 0 or about -2 pi.
    """
    jump = after - before
    wrapped = torch.fmod(jump + math.pi, 2 * math.pi) - math.pi
    wrapped = torch.where((wrapped == -math.pi) & (jump > 0), math.pi, wrapped)
    return torch.where(jump.abs() < math.pi, 0.0, wrapped - jump)


@dataclasses.dataclass(frozen=True)
class FrameCoefficients:
    """Per-frame pyramid quantities, one tensor per extracted level (level 1 first).

    Attributes:
        phase: per level float32 (F, nbands, h_l, w_l), ``atan2(imag, real)`` in radians, (-pi, pi].
        magnitude: per level float32 (F, nbands, h_l, w_l), ``|c| + 1e-10`` (> 0).
        blurred_magnitude: per level float32 (F, nbands, h_l, w_l), ``G * magnitude`` (spec 8.3), the
            denominator of the amplitude-weighted blur, which depends on the frame only.
    """

    phase: Tuple[torch.Tensor, ...]
    magnitude: Tuple[torch.Tensor, ...]
    blurred_magnitude: Tuple[torch.Tensor, ...]

    @property
    def num_frames(self) -> int:
        """F, the number of frames held."""
        return self.phase[0].shape[0]

    def index_select(self, index: torch.Tensor) -> "FrameCoefficients":
        """Frames ``index`` (LongTensor (n,)), in that order, as a new FrameCoefficients of n frames."""
        index = index.to(self.phase[0].device)
        return FrameCoefficients(*(tuple(t.index_select(0, index) for t in field) for field in self._fields()))

    @staticmethod
    def concat(parts: Sequence["FrameCoefficients"]) -> "FrameCoefficients":
        """Frames of ``parts`` one after the other (e.g. a ring buffer of recent frames plus new ones)."""
        if not parts:
            raise ValueError("concat needs at least one FrameCoefficients, got none")
        fields = zip(*(part._fields() for part in parts))
        return FrameCoefficients(*(tuple(torch.cat(per_level) for per_level in zip(*field)) for field in fields))

    def _fields(self) -> Tuple[Tuple[torch.Tensor, ...], ...]:
        return self.phase, self.magnitude, self.blurred_magnitude


class PhaseDifferenceExtractor(torch.nn.Module):
    """Phase differences of MIMAMO-Net's temporal stream, with per-frame caching (spec sections 7, 8).

    Args:
        phase_size: side of the grey input images in pixels (the pyramid runs on twice this size).
        height: pyramid height (spec 7; 4 in MIMAMO-Net).
        nbands: orientations per level (2 in MIMAMO-Net; output channels are ``nbands * 12``).
        scale_factor: pyramid scale factor (2 in MIMAMO-Net).
        levels: pyramid levels to extract, 1-based, each in ``[1, height - 2]`` ((1, 2) in MIMAMO-Net:
            ``phase_0`` and ``phase_1``).

    Raises:
        ValueError: bad pyramid arguments or levels (the message gives the valid range).
    """

    def __init__(self, phase_size: int = PHASE_SIZE, height: int = PYRAMID_HEIGHT, nbands: int = PYRAMID_NBANDS,
                 scale_factor: float = PYRAMID_SCALE_FACTOR, levels: Sequence[int] = PYRAMID_LEVELS):
        super().__init__()
        if not isinstance(phase_size, int) or phase_size < 8:
            raise ValueError(f"phase_size must be an integer >= 8, got {phase_size!r}")
        self.pyramid = ComplexSteerablePyramid(2 * phase_size, height, nbands, scale_factor)
        if not levels or any(not 1 <= level <= self.pyramid.num_levels for level in levels):
            raise ValueError(f"levels must be a non-empty sequence of integers in the range "
                             f"[1, {self.pyramid.num_levels}] for height {height}, got {levels!r}")
        self.phase_size = phase_size
        self.levels = tuple(levels)
        # Side of each level's un-mirrored region (spec 7.7): half of that level's band size.
        self.crop_sizes = tuple(self.pyramid.level_sizes[level - 1] // 2 for level in self.levels)
        for i, size in enumerate(self.crop_sizes):
            self.register_buffer(f"blur_matrix_{i}", blur_matrix(size), persistent=False)

    def frame_coefficients(self, images: torch.Tensor) -> FrameCoefficients:
        """Per-frame work, done once per frame (spec 7.1, 7.6, 7.7, 8.1 and the denominator of 8.3).

        Args:
            images: float32 (F, S, S) grey faces in [0, 1] (``S = phase_size``), index ``[row y, col x]``,
                on the extractor's device.

        Returns:
            FrameCoefficients with per level ``(F, nbands, S / 2^(l-1), S / 2^(l-1))`` tensors.

        Raises:
            ValueError: ``images`` is not (F, S, S).
        """
        if images.dim() != 3 or images.shape[-2:] != (self.phase_size, self.phase_size):
            raise ValueError(f"images must have shape (F, {self.phase_size}, {self.phase_size}), "
                             f"got {tuple(images.shape)}")
        bands = self.pyramid.build_bands(symmetric_extension(images), self.levels)
        phases, magnitudes, blurred = [], [], []
        for i, (band, size) in enumerate(zip(bands, self.crop_sizes)):
            band = band[..., :size, :size]
            real, imag = band.real.contiguous(), band.imag.contiguous()  # strided inputs slow atan2 down
            magnitude = torch.sqrt(imag * imag + real * real) + MAGNITUDE_EPS
            phases.append(torch.atan2(imag, real))
            magnitudes.append(magnitude)
            blurred.append(self._blur(magnitude, i))
        return FrameCoefficients(tuple(phases), tuple(magnitudes), tuple(blurred))

    def window_differences(self, coeffs: FrameCoefficients, windows: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """Per-window work: unwrap, weighted blur, difference, centring, clamp (spec 8.2 - 8.7).

        Args:
            coeffs: per-frame coefficients of F frames.
            windows: int64 (W, 13), indices into ``coeffs`` of each window's frames in time order.

        Returns:
            One float32 (W, nbands * 12, h_l, w_l) tensor per level, radians in [-5 pi, 5 pi], channel
            ``12 * band + t`` holding the difference between window frames ``t + 1`` and ``t``. For
            MIMAMO-Net: ``phase_0`` (W, 24, 48, 48) and ``phase_1`` (W, 24, 24, 24).

        Raises:
            ValueError: ``windows`` is not (W, 13) or indexes outside ``[0, F)``.
            TypeError: ``windows`` is not an integer tensor.
        """
        if windows.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"windows must be an integer tensor, got {windows.dtype}")
        if windows.dim() != 2 or windows.shape[1] != WINDOW:
            raise ValueError(f"windows must have shape (W, {WINDOW}), got {tuple(windows.shape)}")
        if windows.numel() and (int(windows.min()) < 0 or int(windows.max()) >= coeffs.num_frames):
            raise ValueError(f"windows must index frames in [0, {coeffs.num_frames}), got values in "
                             f"[{int(windows.min())}, {int(windows.max())}]")
        device = coeffs.phase[0].device
        windows = windows.to(device=device, dtype=torch.int64)
        # The unwrap correction of a step depends only on its (earlier, later) frame pair, and sliding
        # windows share most pairs: compute each distinct pair once. Row 0 of each correction table is
        # the zero correction of a window's first frame, so a cumulative sum over the 13 gathered rows
        # gives the unwrap offsets of spec 8.2.
        pair_keys = windows[:, :-1] * coeffs.num_frames + windows[:, 1:]
        pairs, pair_index = torch.unique(pair_keys, return_inverse=True)
        before, after = pairs // coeffs.num_frames, pairs % coeffs.num_frames
        correction_index = torch.cat([torch.zeros_like(windows[:, :1]), pair_index + 1], dim=1)  # (W, 13)
        chunk = _CPU_WINDOW_CHUNK if device.type == "cpu" else _ACCELERATOR_WINDOW_CHUNK
        outputs = []
        for i in range(len(self.levels)):
            phase = coeffs.phase[i]
            corrections = unwrap_corrections(phase.index_select(0, before), phase.index_select(0, after))
            corrections = torch.cat([torch.zeros_like(phase[:1]), corrections])
            out = phase.new_empty((windows.shape[0], phase.shape[1], NUM_PHASE) + phase.shape[2:])
            for start in range(0, windows.shape[0], chunk):
                end = start + chunk
                self._differences_into(coeffs, i, corrections, windows[start:end], correction_index[start:end],
                                       out[start:end])
            outputs.append(out.view((out.shape[0], -1) + out.shape[3:]))
        return tuple(outputs)

    def _differences_into(self, coeffs: FrameCoefficients, level_index: int, corrections: torch.Tensor,
                          frames: torch.Tensor, correction_index: torch.Tensor, out: torch.Tensor) -> None:
        """Spec 8.2 - 8.7 for a chunk of n windows, written into ``out`` (n, nbands, 12, h, w).

        ``frames`` and ``correction_index`` are int64 (n, 13): frame indices and rows of ``corrections``.
        """
        shape = (frames.shape[0], WINDOW) + tuple(corrections.shape[1:])  # (n, T, nbands, h, w)
        flat = frames.reshape(-1)
        unwrapped = corrections.index_select(0, correction_index.reshape(-1)).view(shape).cumsum_(1)
        unwrapped.add_(coeffs.phase[level_index].index_select(0, flat).view(shape))
        weighted = unwrapped.mul_(coeffs.magnitude[level_index].index_select(0, flat).view(shape))
        denoised = self._blur(weighted, level_index)
        denoised.div_(coeffs.blurred_magnitude[level_index].index_select(0, flat).view(shape))
        difference = denoised[:, 1:] - denoised[:, :-1]  # (n, K, nbands, h, w)
        difference.sub_(difference.mean(dim=(-2, -1), keepdim=True)).clamp_(-CLAMP_RAD, CLAMP_RAD)
        out.copy_(difference.transpose(1, 2))

    def snippet_differences(self, snippet: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """The original's per-window semantics (``phase_diff_output``): every window image on its own.

        Each of the B * L * 13 images goes through the pyramid, as in the original (one snippet at a
        time); use ``frame_coefficients`` + ``window_differences`` on distinct frames to share the
        per-frame work.

        Args:
            snippet: float32 (B, L, 13, S, S) grey faces in [0, 1]; ``snippet[b, f, t]`` is frame
                ``f - 6 + t`` (clamped) of snippet frame ``f``.

        Returns:
            One float32 (B, L, nbands * 12, h_l, w_l) tensor per level, as ``window_differences``; for
            MIMAMO-Net ``phase_0`` (B, L, 24, 48, 48) and ``phase_1`` (B, L, 24, 24, 24).

        Raises:
            ValueError: ``snippet`` is not (B, L, 13, S, S).
        """
        if snippet.dim() != 5 or snippet.shape[2:] != (WINDOW, self.phase_size, self.phase_size):
            raise ValueError(f"snippet must have shape (B, L, {WINDOW}, {self.phase_size}, {self.phase_size}), "
                             f"got {tuple(snippet.shape)}")
        windows = torch.arange(snippet.shape[1] * WINDOW).view(-1, WINDOW)
        per_snippet = []  # one snippet at a time bounds the memory of the L * 13 pyramids
        for images in snippet.flatten(1, 2):
            per_snippet.append(self.window_differences(self.frame_coefficients(images), windows))
        return tuple(torch.stack(level) for level in zip(*per_snippet))

    def _blur(self, maps: torch.Tensor, level_index: int) -> torch.Tensor:
        """Correlation of each (h, w) map with the 11 x 11 Gaussian, zero padding 5, as ``B @ X @ B``."""
        matrix = getattr(self, f"blur_matrix_{level_index}")
        return torch.matmul(matrix, maps @ matrix)
