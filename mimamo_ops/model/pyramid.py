"""Complex steerable pyramid in the Fourier domain, as MIMAMO-Net configures it (spec section 7).

Frequency-domain conventions (spec 7.2): for a centred M x M spectrum, index ``[row v, col u]``, the
coordinates are ``c_k = (k - M/2) / (M/2)``; ``theta = atan2(v, u)``, ``rho = sqrt(u^2 + v^2)`` with the
DC entry replaced by its left neighbour (``2/M``), and ``lambda = log2(rho)``.

All masks are constants of the image size. They are computed once in ``__init__`` in float64 numpy with
``np.interp`` (spec 7.3, 7.4), cast to float32 one by one, multiplied together in float32 and stored as
non-persistent buffers, so they follow ``.to(device)`` and stay out of checkpoints.

The spec's roll-based ``fftshift`` / ``ifftshift`` (spec 7.5; for the even sizes allowed here both are
the half-size roll) and the centred spectrum crops (spec 7.6 step 4) are folded into the buffers once:
each mask is stored ``ifftshift``-ed, and each level keeps the index of its cropped spectrum inside the
un-shifted full spectrum. Because a shift or a crop only permutes or selects entries, and multiplication
by a mask is element-wise, this gives exactly the spectra the shift/crop/multiply sequence gives. The band
factor ``(-i)^(nbands-1)`` multiplies the cropped spectrum once per level instead of every band mask;
its parts are 0 and +-1, so the products are the same.
"""
import math
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np
import torch

# Lookup-table sizes of the original (spec 7.3 and 7.4).
_RADIAL_HALF_SAMPLES = 256  # raised cosine sampled at v/256, v = -257 .. 1
_ANGULAR_LUT_SIZE = 1024  # cosine sampled at pi*u/1024, u = -2049 .. 1025
MAX_NBANDS = 16  # orientation order nbands - 1 in [0, 15], as in pyrtools

PyramidOutput = Dict[str, Union[torch.Tensor, List[torch.Tensor]]]


def _radial_table() -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raised-cosine table ``rcosFn(width=1, position=-0.5)`` (spec 7.3).

    Returns:
        ``(x, yr, yir)``, float64 (259,) each: abscissa in log2 cycles (``v/256``), the high-pass transition
        ``|cos|`` and the low-pass transition ``sqrt(1 - yr^2)``.
    """
    v = np.arange(-_RADIAL_HALF_SAMPLES - 1, 2)
    angle = np.pi * v / (2 * _RADIAL_HALF_SAMPLES)
    y = np.cos(angle) ** 2
    y[0] = y[1]
    y[-1] = y[-2]
    x = -0.5 + (2.0 / np.pi) * (angle + np.pi / 4)
    yr = np.sqrt(y)
    yir = np.sqrt(1.0 - yr**2)
    return x, yr, yir


def _angular_table(nbands: int) -> Tuple[np.ndarray, np.ndarray]:
    """Half-plane angular table for order ``nbands - 1`` (spec 7.4).

    Returns:
        ``(xc, yc)``, float64 (3075,) each: angle in radians and ``2 sqrt(const) cos(xc)^order`` on the
        half plane ``|alpha| < pi/2`` (zero elsewhere).
    """
    order = nbands - 1
    u = np.arange(-(2 * _ANGULAR_LUT_SIZE + 1), _ANGULAR_LUT_SIZE + 2)
    xc = np.pi * u / _ANGULAR_LUT_SIZE
    alpha = np.mod(xc + np.pi, 2 * np.pi) - np.pi
    const = (2 ** (2 * order)) * (math.factorial(order) ** 2) / (nbands * math.factorial(2 * order))
    yc = 2.0 * np.sqrt(const) * np.cos(xc) ** order * (np.abs(alpha) < np.pi / 2)
    return xc, yc


def _polar_grid(size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Centred frequency grid (spec 7.2).

    Returns:
        ``(log_rad, angle)``, float64 (size, size) each, index ``[row v, col u]``: ``log2`` of the radius
        (DC replaced by its left neighbour) and ``atan2(v, u)`` in radians.
    """
    coords = (np.arange(size) - size // 2) / (size / 2)
    u, v = np.meshgrid(coords, coords)
    rad = np.sqrt(u**2 + v**2)
    rad[size // 2, size // 2] = rad[size // 2, size // 2 - 1]
    return np.log2(rad), np.arctan2(v, u)


def _crop_bounds(size: int) -> Tuple[int, int]:
    """Rows/cols ``[start, end)`` kept when a centred spectrum is halved (spec 7.6 step 4)."""
    centre = math.ceil((size + 0.5) / 2)
    half = math.ceil((size - 0.5) / 2)
    start = centre - math.ceil((half + 0.5) / 2)
    return start, start + half


def _interp(points: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """``np.interp`` on a 2-D grid, then cast to float32 (the original casts every mask before use)."""
    return np.interp(points.ravel(), xp, fp).reshape(points.shape).astype(np.float32)


class ComplexSteerablePyramid(torch.nn.Module):
    """Complex steerable pyramid of square images, batched over leading dimensions (spec section 7).

    ``height`` counts the real high-pass residual, ``height - 2`` band levels and the real low-pass
    residual. Level ``l`` (1-based) has ``nbands`` complex bands of size ``image_size / 2^(l-1)``;
    the low-pass residual has size ``image_size / 2^(height-2)``.

    Args:
        image_size: M, the side of the square input in pixels; even, and divisible by
            ``2^(height-1)`` so that every level and the low-pass residual have even sizes.
        height: pyramid height, in ``[2, floor(log2(M)) - 2]`` (4 for MIMAMO-Net on 96 x 96).
        nbands: orientations per level, in ``[1, 16]`` (order ``nbands - 1``; 2 for MIMAMO-Net).
        scale_factor: ratio between the centre frequencies of successive levels, > 1 (the radial
            tables shift by ``log2(scale_factor)`` per level); the spectrum is always halved.

    Attributes:
        level_sizes: ``M_l`` of each band level, level 1 first (96 and 48 for MIMAMO-Net).

    Raises:
        ValueError: an argument is outside its valid range (the message gives the range).
    """

    def __init__(self, image_size: int = 96, height: int = 4, nbands: int = 2, scale_factor: float = 2.0):
        super().__init__()
        _check_arguments(image_size, height, nbands, scale_factor)
        self.image_size = int(image_size)
        self.height = int(height)
        self.nbands = int(nbands)
        self.scale_factor = float(scale_factor)
        self.num_levels = self.height - 2

        x_rad, yr, yir = _radial_table()
        xc, yc = _angular_table(self.nbands)
        log_rad, angle = _polar_grid(self.image_size)
        # (-i)^(nbands-1) (spec 7.6 step 3), applied to the cropped spectrum: exact, as its parts are 0, +-1.
        self.band_factor = complex((-1j) ** (self.nbands - 1))

        self.register_buffer("highpass_mask", _shifted(_interp(log_rad, x_rad, yr)), persistent=False)
        lowpass = torch.from_numpy(_interp(log_rad, x_rad, yir))  # lo0, centred, float32
        # centred position -> index in the un-shifted full spectrum (fftshift of the identity)
        spectrum_index = _roll_half(np.arange(self.image_size))
        self.level_sizes: List[int] = []
        for level in range(1, self.num_levels + 1):
            x_rad = x_rad - math.log2(self.scale_factor)
            himask = torch.from_numpy(_interp(log_rad, x_rad, yr))
            masks = []
            for band in range(self.nbands):
                anglemask = torch.from_numpy(_interp(angle, xc + np.pi * band / self.nbands, yc))
                masks.append(lowpass * anglemask * himask)
            size = log_rad.shape[0]
            self.level_sizes.append(size)
            self.register_buffer(f"band_masks_{level}", _shifted(torch.stack(masks)), persistent=False)
            self.register_buffer(
                f"spectrum_index_{level}", torch.from_numpy(_roll_half(spectrum_index)), persistent=False
            )
            start, end = _crop_bounds(size)
            log_rad = log_rad[start:end, start:end]
            angle = angle[start:end, start:end]
            spectrum_index = spectrum_index[start:end]
            lowpass = lowpass[start:end, start:end] * torch.from_numpy(_interp(log_rad, x_rad, yir))
        self.register_buffer("lowpass_mask", _shifted(lowpass), persistent=False)
        self.register_buffer(
            "lowpass_spectrum_index", torch.from_numpy(_roll_half(spectrum_index)), persistent=False
        )

    def build(self, images: torch.Tensor) -> PyramidOutput:
        """Builds the whole pyramid (spec 7.6), residuals included.

        Args:
            images: float32 (..., M, M), index ``[row y, col x]``; any leading dimensions. For MIMAMO-Net
                this is the 96 x 96 symmetric extension of a grey face in [0, 1].

        Returns:
            ``"highpass"``: float32 (..., M, M), real part of the high-pass residual;
            ``"bands"``: list over levels 1 .. height-2 of complex64 (..., nbands, M_l, M_l), band ``b``
            of level ``l`` at ``M_l = M / 2^(l-1)``, already multiplied by ``(-i)^(nbands-1)``;
            ``"lowpass"``: float32 (..., M_L, M_L), real part of the low-pass residual.
        """
        spectrum = self._spectrum(images)
        highpass = torch.fft.ifft2(spectrum * self.highpass_mask).real
        lowpass_spectrum = _gather(spectrum, self.lowpass_spectrum_index, self.image_size)
        lowpass = torch.fft.ifft2(lowpass_spectrum * self.lowpass_mask).real
        bands = self._bands(spectrum, range(1, self.num_levels + 1))
        return {"highpass": highpass, "bands": bands, "lowpass": lowpass}

    def build_bands(self, images: torch.Tensor, levels: Sequence[int] = (1, 2)) -> List[torch.Tensor]:
        """Builds only the requested band levels: no residuals, so two inverse DFTs fewer (spec 10.1).

        Args:
            images: float32 (..., M, M), index ``[row y, col x]``.
            levels: 1-based level numbers, each in ``[1, height - 2]``.

        Returns:
            One complex64 (..., nbands, M_l, M_l) tensor per requested level, equal to ``build``'s bands.

        Raises:
            ValueError: a level is out of range.
        """
        for level in levels:
            if not 1 <= level <= self.num_levels:
                raise ValueError(f"levels must be in the range [1, {self.num_levels}] for height {self.height}, "
                                 f"got {list(levels)}")
        return self._bands(self._spectrum(images), levels)

    def _spectrum(self, images: torch.Tensor) -> torch.Tensor:
        """Un-shifted, unnormalised 2-D DFT: complex64 (..., M, M)."""
        if images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"images must have shape (..., {self.image_size}, {self.image_size}), "
                             f"got {tuple(images.shape)}")
        if images.dtype != torch.float32:
            raise TypeError(f"images must be float32, got {images.dtype}")
        return torch.fft.fft2(images)

    def _bands(self, spectrum: torch.Tensor, levels: Sequence[int]) -> List[torch.Tensor]:
        out = []
        for level in levels:
            cropped = _gather(spectrum, getattr(self, f"spectrum_index_{level}"), self.image_size)
            if self.band_factor != 1:
                cropped = cropped * self.band_factor
            masks = getattr(self, f"band_masks_{level}")
            out.append(torch.fft.ifft2(cropped.unsqueeze(-3) * masks))
        return out

    def extra_repr(self) -> str:
        return (f"image_size={self.image_size}, height={self.height}, nbands={self.nbands}, "
                f"scale_factor={self.scale_factor}")


def _roll_half(index: np.ndarray) -> np.ndarray:
    """Roll by half the (even) length: both ``fftshift`` and ``ifftshift`` of spec 7.5."""
    return np.roll(index, index.shape[0] // 2)


def _shifted(mask: Union[np.ndarray, torch.Tensor]) -> torch.Tensor:
    """``ifftshift`` over the last two axes, so a centred mask applies to an un-shifted spectrum."""
    mask = torch.as_tensor(mask)
    half = mask.shape[-1] // 2
    return torch.roll(mask, shifts=(half, half), dims=(-2, -1)).contiguous()


def _gather(spectrum: torch.Tensor, index: torch.Tensor, full_size: int) -> torch.Tensor:
    """Rows and columns ``index`` of ``spectrum`` (..., M, M): the crop of the centred spectrum, un-shifted."""
    if index.numel() == full_size:
        return spectrum
    return spectrum.index_select(-2, index).index_select(-1, index)


def _check_arguments(image_size: int, height: int, nbands: int, scale_factor: float) -> None:
    """Raises ValueError naming the valid range of the first bad argument."""
    if not isinstance(image_size, (int, np.integer)) or image_size < 16 or image_size % 2:
        raise ValueError(f"image_size must be an even integer >= 16, got {image_size!r}")
    max_height = int(math.floor(math.log2(image_size))) - 2
    if not isinstance(height, (int, np.integer)) or not 2 <= height <= max_height:
        raise ValueError(f"height must be an integer in the range [2, {max_height}] for image_size "
                         f"{image_size}, got {height!r}")
    if image_size % (2 ** (height - 1)):
        raise ValueError(f"image_size must be divisible by 2**(height-1) = {2 ** (height - 1)} so that every "
                         f"level has an even size, got image_size {image_size} with height {height}")
    if not isinstance(nbands, (int, np.integer)) or not 1 <= nbands <= MAX_NBANDS:
        raise ValueError(f"nbands must be an integer in the range [1, {MAX_NBANDS}], got {nbands!r}")
    if not isinstance(scale_factor, (int, float)) or not scale_factor > 1.0 or not math.isfinite(scale_factor):
        raise ValueError(f"scale_factor must be a finite number in the range (1, inf), got {scale_factor!r}")
