"""Phase-difference features against the original's outputs (parity case 2) and the cached path."""
import math
import pathlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mimamo_ops.model.phase import (
    CLAMP_RAD,
    NUM_PHASE,
    PHASE_SIZE,
    WINDOW,
    FrameCoefficients,
    PhaseDifferenceExtractor,
    blur_matrix,
    gaussian_taps,
    symmetric_extension,
    unwrap_corrections,
)
from tests.parity_recipes import render, wave_params

PARITY_DIR = pathlib.Path(__file__).resolve().parents[1] / "data" / "parity"
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
PHASE_ATOL = 1e-3  # parity README section 4: phase_0 / phase_1, all elements
CACHE_ATOL = 1e-6  # cached per-frame path against the per-window path


@pytest.fixture(scope="module")
def case2():
    """Parity case 2 (seed 2002): 16 frames per clip, (2, 4, 13, 48, 48) snippet, expected phases."""
    rng = np.random.default_rng(2002)
    clips = []
    for b in (0, 1):
        params = wave_params(rng, 8)
        clips.append(np.stack([
            render(params, 48, 48, dy=1.2 * np.sin(2 * np.pi * g / 9 + b), dx=1.6 * np.sin(2 * np.pi * g / 6 + 0.5 * b))
            for g in range(16)
        ]))
    frames_u8 = np.stack(clips)  # (2, 16, 48, 48)
    snippet_u8 = np.stack([[frames_u8[b, w:w + WINDOW] for w in range(4)] for b in range(2)])
    to_float = lambda u8: torch.from_numpy(u8.astype(np.float32) / np.float32(255))  # noqa: E731
    expected = (np.load(PARITY_DIR / "case2_phase0_expected.npz")["phase_0"],
                np.load(PARITY_DIR / "case2_phase1_expected.npz")["phase_1"])
    return to_float(frames_u8), to_float(snippet_u8), expected


@pytest.fixture(scope="module")
def extractor():
    return PhaseDifferenceExtractor()


def test_constants_match_the_checkpoint_layout():
    assert (NUM_PHASE, WINDOW, PHASE_SIZE) == (12, 13, 48)
    kernel = torch.outer(gaussian_taps(), gaussian_taps())
    i = torch.arange(-5, 6, dtype=torch.float64)
    reference = torch.exp(-(i[:, None] ** 2 + i[None, :] ** 2) / 8)  # spec 8.3, not normalised
    assert kernel.shape == (11, 11)
    torch.testing.assert_close(kernel.double(), reference, rtol=1e-6, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_case2_snippet_differences_match_original(case2, extractor, device):
    _, snippet, expected = case2
    phase_0, phase_1 = extractor.to(device).snippet_differences(snippet.to(device))
    assert phase_0.shape == (2, 4, 24, 48, 48) and phase_0.dtype == torch.float32
    assert phase_1.shape == (2, 4, 24, 24, 24) and phase_1.dtype == torch.float32
    assert phase_0.device.type == device and phase_1.device.type == device
    for name, actual, reference in (("phase_0", phase_0, expected[0]), ("phase_1", phase_1, expected[1])):
        actual = actual.cpu().numpy()
        max_diff = float(np.abs(actual - reference).max())
        np.testing.assert_allclose(actual, reference, rtol=0, atol=PHASE_ATOL,
                                   err_msg=f"{name}: max |diff| {max_diff:.3g}")


@pytest.mark.parametrize("device", DEVICES)
def test_cached_frames_equal_the_per_window_path(case2, extractor, device):
    frames, snippet, _ = case2
    extractor = extractor.to(device)
    per_window = extractor.snippet_differences(snippet.to(device))
    coeffs = extractor.frame_coefficients(frames.reshape(32, 48, 48).to(device))  # 16 distinct frames per clip
    windows = torch.stack([torch.arange(WINDOW) + w + 16 * b for b in range(2) for w in range(4)])
    cached = extractor.window_differences(coeffs, windows)
    for fast, reference in zip(cached, per_window):
        torch.testing.assert_close(fast.view(reference.shape), reference, rtol=0, atol=CACHE_ATOL)


def test_clamped_edge_windows_equal_the_per_window_path(case2, extractor):
    """Windows that repeat the first/last frame (spec 6.4 clamping) give the same as their images."""
    frames, _, _ = case2
    frames = frames[0, :9]  # a 9-frame clip: every 13-frame window is clamped at one or both ends
    positions = torch.tensor([0, 3, 8])
    windows = (positions[:, None] + torch.arange(WINDOW) - NUM_PHASE // 2).clamp(0, len(frames) - 1)
    cached = extractor.window_differences(extractor.frame_coefficients(frames), windows)
    per_window = extractor.snippet_differences(frames[windows].unsqueeze(0))
    for fast, reference in zip(cached, per_window):
        assert fast.shape == reference.shape[1:]
        torch.testing.assert_close(fast, reference[0], rtol=0, atol=CACHE_ATOL)


def test_ring_buffer_of_coefficients_equals_one_pass(case2, extractor):
    frames = case2[0][1]  # (16, 48, 48)
    whole = extractor.frame_coefficients(frames)
    buffered = FrameCoefficients.concat([extractor.frame_coefficients(frames[:10]),
                                         extractor.frame_coefficients(frames[10:])])
    kept = buffered.index_select(torch.arange(3, 16))  # drop the 3 oldest frames
    assert kept.num_frames == 13 and whole.num_frames == 16
    windows = torch.arange(WINDOW)[None, :]
    for a, b in zip(extractor.window_differences(kept, windows), extractor.window_differences(whole, windows + 3)):
        torch.testing.assert_close(a, b, rtol=0, atol=CACHE_ATOL)


def test_frame_coefficients_shapes_and_values(case2, extractor):
    frames = case2[0][0, :5]
    coeffs = extractor.frame_coefficients(frames)
    assert [tuple(p.shape) for p in coeffs.phase] == [(5, 2, 48, 48), (5, 2, 24, 24)]
    assert all(t.dtype == torch.float32 for field in (coeffs.phase, coeffs.magnitude, coeffs.blurred_magnitude)
               for t in field)
    bands = extractor.pyramid.build_bands(symmetric_extension(frames))
    for level, band in enumerate(bands):
        half = band.shape[-1] // 2
        quarter = band[..., :half, :half]
        torch.testing.assert_close(coeffs.phase[level], torch.angle(quarter), rtol=0, atol=1e-6)
        torch.testing.assert_close(coeffs.magnitude[level], quarter.abs() + 1e-10, rtol=1e-6, atol=0)
        assert bool((coeffs.magnitude[level] > 0).all())


def test_outputs_are_spatially_centred_and_clamped(case2, extractor):
    phase_0, phase_1 = extractor.snippet_differences(case2[1])
    for out in (phase_0, phase_1):
        assert float(out.abs().max()) <= CLAMP_RAD
        assert float(out.mean(dim=(-2, -1)).abs().max()) < 1e-5


def test_inference_mode_gives_the_same_result(case2, extractor):
    frames = case2[0][0, :WINDOW]
    windows = torch.arange(WINDOW)[None, :]
    reference = extractor.window_differences(extractor.frame_coefficients(frames), windows)
    with torch.inference_mode():
        result = extractor.window_differences(extractor.frame_coefficients(frames), windows)
    for a, b in zip(result, reference):
        assert not a.requires_grad
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_unwrap_corrects_upward_jumps_only():
    """A jump above +pi is unwrapped by -2 pi; a jump below -pi is left alone (parity README 3.1)."""
    phase = torch.tensor([0.0, 3.0, -3.0, -2.5, 2.9, 1.0], dtype=torch.float32)
    #                 jumps:  +3.0  -6.0   +0.5  +5.4  -1.9
    corrections = unwrap_corrections(phase[:-1], phase[1:])
    torch.testing.assert_close(corrections, torch.tensor([0.0, 0.0, 0.0, -2 * math.pi, 0.0]), rtol=0, atol=1e-6)
    unwrapped = phase + torch.cat([torch.zeros(1), corrections.cumsum(0)])
    expected = torch.tensor([0.0, 3.0, -3.0, -2.5, 2.9 - 2 * math.pi, 1.0 - 2 * math.pi])
    torch.testing.assert_close(unwrapped, expected, rtol=0, atol=1e-6)
    # numpy.unwrap would also lift the -6.0 jump by +2 pi: the original's fmod makes it one-sided.
    assert not np.allclose(np.unwrap(phase.numpy()), expected.numpy(), atol=1e-3)


def test_unwrap_uses_truncating_fmod_at_the_boundary():
    """``fmod(d + pi, 2 pi) - pi`` lands on -pi for d = pi (float32); the rule maps it to +pi, so 0."""
    before = torch.zeros(3)
    after = torch.tensor([math.pi, -math.pi, 1.5 * math.pi], dtype=torch.float32)
    corrections = unwrap_corrections(before, after)
    assert corrections[0] == 0 and corrections[1] == 0
    torch.testing.assert_close(corrections[2], torch.tensor(-2 * math.pi), rtol=0, atol=1e-6)


@pytest.mark.parametrize("size", [48, 24])
def test_blur_matrix_equals_zero_padded_11x11_correlation(size):
    rng = np.random.default_rng(size)
    maps = torch.from_numpy(rng.uniform(0, 5, (3, size, size)).astype(np.float32))
    i = torch.arange(-5, 6, dtype=torch.float64)
    kernel = torch.exp(-(i[:, None] ** 2 + i[None, :] ** 2) / 8).float()
    reference = F.conv2d(maps.unsqueeze(1), kernel.view(1, 1, 11, 11), padding=5).squeeze(1)
    matrix = blur_matrix(size)
    torch.testing.assert_close(matrix @ maps @ matrix, reference, rtol=1e-5, atol=1e-4)


def test_bad_windows_raise(case2, extractor):
    coeffs = extractor.frame_coefficients(case2[0][0, :4])
    with pytest.raises(ValueError, match=r"windows must have shape \(W, 13\), got \(2, 12\)"):
        extractor.window_differences(coeffs, torch.zeros(2, 12, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"windows must index frames in \[0, 4\), got values in \[0, 4\]"):
        extractor.window_differences(coeffs, torch.arange(WINDOW)[None, :].clamp(max=4))
    with pytest.raises(TypeError, match="windows must be an integer tensor, got torch.float32"):
        extractor.window_differences(coeffs, torch.zeros(1, WINDOW))


def test_bad_images_and_arguments_raise(extractor):
    with pytest.raises(ValueError, match=r"images must have shape \(F, 48, 48\), got \(2, 96, 96\)"):
        extractor.frame_coefficients(torch.zeros(2, 96, 96))
    with pytest.raises(ValueError, match=r"snippet must have shape \(B, L, 13, 48, 48\), got \(1, 2, 12, 48, 48\)"):
        extractor.snippet_differences(torch.zeros(1, 2, 12, 48, 48))
    with pytest.raises(ValueError, match=r"levels must be a non-empty sequence of integers in the range \[1, 2\]"):
        PhaseDifferenceExtractor(levels=(1, 3))
    with pytest.raises(ValueError, match=r"height must be an integer in the range \[2, 4\]"):
        PhaseDifferenceExtractor(height=5)
    with pytest.raises(ValueError, match=r"phase_size must be an integer >= 8, got 4"):
        PhaseDifferenceExtractor(phase_size=4)


def test_filters_are_non_persistent_buffers():
    extractor = PhaseDifferenceExtractor()
    assert extractor.state_dict() == {}
    assert extractor.blur_matrix_0.shape == (48, 48) and extractor.blur_matrix_1.shape == (24, 24)
