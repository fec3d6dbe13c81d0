"""ComplexSteerablePyramid against the original's outputs (parity case 1) and against pyrtools."""
import pathlib

import numpy as np
import pyrtools
import pytest
import torch

from mimamo_ops.model.phase import symmetric_extension
from mimamo_ops.model.pyramid import ComplexSteerablePyramid
from tests.parity_recipes import render, wave_params

PARITY_DIR = pathlib.Path(__file__).resolve().parents[1] / "data" / "parity"
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
# Parity README section 4: bands atol 1e-5, low-pass atol 1e-4 (original float32 vs float64: 3.7e-7, 2.7e-6).
BAND_ATOL = 1e-5
LOWPASS_ATOL = 1e-4


@pytest.fixture(scope="module")
def case1():
    """Parity case 1: four 48 x 48 textures (seed 1001) and the original's pyramid outputs."""
    expected = dict(np.load(PARITY_DIR / "case1_pyramid_expected.npz"))
    rng = np.random.default_rng(1001)
    images_u8 = np.stack([render(wave_params(rng, 8), 48, 48) for _ in range(4)])
    np.testing.assert_array_equal(images_u8, expected["images_u8"])
    images = torch.from_numpy(images_u8.astype(np.float32) / np.float32(255))
    return images, expected


def assert_close_np(actual: np.ndarray, expected: np.ndarray, atol: float, name: str) -> None:
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    max_diff = float(np.abs(actual - expected).max())
    np.testing.assert_allclose(actual, expected, rtol=0, atol=atol, err_msg=f"{name}: max |diff| {max_diff:.3g}")


@pytest.mark.parametrize("device", DEVICES)
def test_case1_full_pyramid_matches_original(case1, device):
    images, expected = case1
    pyramid = ComplexSteerablePyramid(96, height=4, nbands=2, scale_factor=2.0).to(device)
    out = pyramid.build(symmetric_extension(images).to(device))

    assert out["highpass"].shape == (4, 96, 96) and out["highpass"].dtype == torch.float32
    assert [tuple(b.shape) for b in out["bands"]] == [(4, 2, 96, 96), (4, 2, 48, 48)]
    assert all(b.dtype == torch.complex64 for b in out["bands"])
    assert out["lowpass"].shape == (4, 24, 24) and out["lowpass"].dtype == torch.float32
    assert all(t.device.type == device for t in [out["highpass"], out["lowpass"], *out["bands"]])

    assert_close_np(out["highpass"].cpu().numpy(), expected["hi0"], BAND_ATOL, "hi0")
    for level, band in enumerate(out["bands"], start=1):
        band = band.cpu()
        assert_close_np(band.real.numpy(), expected[f"level{level}_real"], BAND_ATOL, f"level{level} real")
        assert_close_np(band.imag.numpy(), expected[f"level{level}_imag"], BAND_ATOL, f"level{level} imag")
        # The original's extracted levels are the top-left quarter (the un-mirrored image), spec 7.7.
        half = band.shape[-1] // 2
        quarter = band[..., :half, :half].unsqueeze(2)  # (bs, band, frame = 1, h, w)
        assert_close_np(quarter.real.numpy(), expected[f"extracted_level{level}_real"], BAND_ATOL, "extracted real")
        assert_close_np(quarter.imag.numpy(), expected[f"extracted_level{level}_imag"], BAND_ATOL, "extracted imag")
    assert_close_np(out["lowpass"].cpu().numpy(), expected["lowpass"], LOWPASS_ATOL, "lowpass")


@pytest.mark.parametrize("device", DEVICES)
def test_build_bands_equals_the_bands_of_build(case1, device):
    images, _ = case1
    pyramid = ComplexSteerablePyramid().to(device)
    extended = symmetric_extension(images).to(device)
    full = pyramid.build(extended)["bands"]
    assert [b.shape for b in pyramid.build_bands(extended, levels=(2,))] == [full[1].shape]
    for fast, reference in zip(pyramid.build_bands(extended, levels=(1, 2)), full):
        torch.testing.assert_close(fast, reference, rtol=0, atol=0)


def test_leading_dimensions_are_batched_independently():
    rng = np.random.default_rng(7)
    images = torch.from_numpy(rng.uniform(0, 1, (2, 3, 32, 32)).astype(np.float32))
    pyramid = ComplexSteerablePyramid(32, height=3)
    batched = pyramid.build(images)
    single = pyramid.build(images[1, 2])
    assert batched["bands"][0].shape == (2, 3, 2, 32, 32)
    torch.testing.assert_close(batched["bands"][0][1, 2], single["bands"][0], rtol=0, atol=1e-6)
    torch.testing.assert_close(batched["highpass"][1, 2], single["highpass"], rtol=0, atol=1e-6)
    torch.testing.assert_close(batched["lowpass"][1, 2], single["lowpass"], rtol=0, atol=1e-6)


def test_masks_are_non_persistent_buffers_that_follow_the_module():
    pyramid = ComplexSteerablePyramid()
    assert pyramid.state_dict() == {}
    names = {name for name, _ in pyramid.named_buffers()}
    assert {"highpass_mask", "lowpass_mask", "band_masks_1", "band_masks_2"} <= names
    assert pyramid.band_masks_1.shape == (2, 96, 96) and pyramid.band_masks_1.dtype == torch.float32
    assert pyramid.highpass_mask.dtype == torch.float32
    assert all(buffer.device.type == "meta" for buffer in pyramid.to("meta").buffers())


@pytest.mark.parametrize("size,nbands", [(96, 2), (64, 2), (64, 4), (48, 3)])
def test_matches_pyrtools_complex_steerable_pyramid(size, nbands):
    """Our pyramid against pyrtools' ``SteerablePyramidFreq(..., is_complex=True)`` on a random image.

    pyrtools is an independent implementation of the same transform (Simoncelli's matlabPyrTools). Checked
    empirically, the only differences are bookkeeping and precision:

    * height: pyrtools counts band levels only, ours also counts the two residuals (ours = pyrtools + 2);
    * orientation: pyrtools takes ``order = nbands - 1``; band ``b`` has the same angular mask (centred at
      ``pi * b / nbands``, same sign convention) and the same ``(-i)^order`` factor, so no conjugation,
      sign flip or reordering is needed;
    * indexing: pyrtools keys ``(level, band)`` with 0-based levels; ours is a list of level ``l + 1``
      tensors with the band axis before the spatial axes;
    * residuals: both keep only the real part of the high-pass and low-pass inverse DFTs; DC handling
      (radius at DC replaced by its left neighbour) is the same;
    * precision: pyrtools is float64 throughout; ours casts masks to float32 and computes in float32.

    So every coefficient must agree to float32 precision (observed max |diff| ~2e-7 on bands of size
    ~1 and 2e-6 on a low-pass of size ~10), asserted with the parity tolerances.
    """
    rng = np.random.default_rng(size + nbands)
    image = rng.uniform(0.0, 1.0, (size, size))
    height = int(np.log2(size)) - 2
    reference = pyrtools.pyramids.SteerablePyramidFreq(image, height=height - 2, order=nbands - 1, is_complex=True)
    ours = ComplexSteerablePyramid(size, height=height, nbands=nbands).build(torch.from_numpy(image.astype(np.float32)))

    assert_close_np(ours["highpass"].numpy(), reference.pyr_coeffs["residual_highpass"], BAND_ATOL, "highpass")
    assert_close_np(ours["lowpass"].numpy(), reference.pyr_coeffs["residual_lowpass"], LOWPASS_ATOL, "lowpass")
    assert len(ours["bands"]) == height - 2
    for level, bands in enumerate(ours["bands"]):
        assert bands.shape == (nbands, size >> level, size >> level)
        for band in range(nbands):
            expected = reference.pyr_coeffs[(level, band)]
            assert np.iscomplexobj(expected)
            assert_close_np(bands[band].real.numpy(), expected.real, BAND_ATOL, f"level {level} band {band} real")
            assert_close_np(bands[band].imag.numpy(), expected.imag, BAND_ATOL, f"level {level} band {band} imag")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"image_size": 95}, r"image_size must be an even integer >= 16"),
        ({"image_size": 8, "height": 2}, r"image_size must be an even integer >= 16"),
        ({"height": 5}, r"height must be an integer in the range \[2, 4\] for image_size 96, got 5"),
        ({"height": 1}, r"height must be an integer in the range \[2, 4\]"),
        ({"image_size": 100, "height": 4}, r"divisible by 2\*\*\(height-1\) = 8"),
        ({"nbands": 0}, r"nbands must be an integer in the range \[1, 16\], got 0"),
        ({"nbands": 17}, r"nbands must be an integer in the range \[1, 16\], got 17"),
        ({"scale_factor": 1.0}, r"scale_factor must be a finite number in the range \(1, inf\), got 1.0"),
    ],
)
def test_bad_arguments_raise_value_error_naming_the_range(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ComplexSteerablePyramid(**kwargs)


def test_bad_input_shape_dtype_or_level_raise():
    pyramid = ComplexSteerablePyramid()
    with pytest.raises(ValueError, match=r"images must have shape \(\.\.\., 96, 96\), got \(2, 48, 48\)"):
        pyramid.build(torch.zeros(2, 48, 48))
    with pytest.raises(TypeError, match="images must be float32, got torch.float64"):
        pyramid.build(torch.zeros(96, 96, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"levels must be in the range \[1, 2\] for height 4, got \[1, 3\]"):
        pyramid.build_bands(torch.zeros(96, 96), levels=(1, 3))
