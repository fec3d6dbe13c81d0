"""Snippet ranges, windows, phase images and stitching (spec 6 and 9)."""
import numpy as np
import pytest
from PIL import Image

from mimamo_ops.model.snippets import (
    chunk_snippets,
    prepare_phase_images,
    snippet_ranges,
    stitch_ranges,
    window_positions,
)


def test_ranges_for_309_faces_end_with_an_overlapping_end_aligned_snippet():
    assert snippet_ranges(309) == [(0, 64), (64, 128), (128, 192), (192, 256), (245, 309)]


@pytest.mark.parametrize(
    "num_faces, expected",
    [(0, []), (1, [(0, 1)]), (40, [(0, 40)]), (64, [(0, 64)]), (65, [(0, 64), (1, 65)]), (128, [(0, 64), (64, 128)])],
)
def test_ranges_edge_cases(num_faces, expected):
    assert snippet_ranges(num_faces) == expected


def test_overlapping_stride():
    assert snippet_ranges(100, length=64, stride=32) == [(0, 64), (32, 96), (36, 100)]


def test_bad_length_raises_value_error():
    with pytest.raises(ValueError, match="length"):
        snippet_ranges(10, length=0)


def test_windows_are_clamped_to_the_track():
    windows = window_positions(np.array([0, 5, 9]), num_faces=10)
    assert windows.shape == (3, 13) and windows.dtype == np.int64
    assert windows[0].tolist() == [0] * 7 + [1, 2, 3, 4, 5, 6]
    assert windows[1].tolist() == [0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9]
    assert windows[2].tolist() == [3, 4, 5, 6, 7, 8] + [9] * 7


def test_phase_images_are_pillow_grey_lanczos_over_255():
    rng = np.random.default_rng(0)
    face = rng.integers(0, 256, size=(112, 112, 3), dtype=np.uint8)
    out = prepare_phase_images([face, face[::-1]])
    assert out.shape == (2, 48, 48) and out.dtype == np.float32
    grey = np.asarray(Image.fromarray(face).convert("L").resize((48, 48), Image.LANCZOS))
    np.testing.assert_array_equal(out[0], grey.astype(np.float32) / np.float32(255))
    assert 0.0 <= out.min() and out.max() <= 1.0


def test_chunks_cover_all_snippets_in_order():
    assert [list(r) for r in chunk_snippets(5, 2)] == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError, match="gru_sequence_snippets"):
        chunk_snippets(3, 0)


def test_later_snippets_overwrite_earlier_ones():
    ranges = [(0, 3), (2, 5)]
    out = stitch_ranges(5, ranges, [np.full((3, 2), 1.0), np.full((3, 2), 2.0)])
    assert out[:, 0].tolist() == [1, 1, 2, 2, 2]
