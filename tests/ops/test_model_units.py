"""The model side of work units (``mimamo_ops.model.units``) against the streaming predictor, on real faces.

The faces are the aligned crops the built-in face stage finds in a real clip (``tests/clips.py``: a moving real
face); the networks carry the seeded weights of ``tests/conftest.py``. Short snippets, an overlapping stride and
two snippets per GRU sequence make every join visible: block ends inside snippets and inside GRU sequences,
blocks shorter than a window, blocks of one face.
"""
from typing import List, Tuple

import numpy as np
import pytest

from mimamo_ops.faces.records import FaceConfig
from mimamo_ops.faces.stages import make_face_extractor
from mimamo_ops.model.predictor import MimamoModel, ModelConfig, stitch_snippets
from mimamo_ops.model.units import BlockEncoder, BlockFeatures, join_face_features, predict_snippets
from tests import clips

FACES = 90


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> List[Tuple[int, float, np.ndarray]]:
    clip = clips.moving_face_clip(tmp_path_factory.mktemp("units") / "face.mp4", n_frames=FACES)
    found = [(face.frame_index, face.timestamp_s, face.aligned)
             for frame in make_face_extractor(FaceConfig()).extract(str(clip)) for face in frame.faces]
    assert len(found) >= FACES - 2
    return found


@pytest.fixture(scope="module")
def model(synthetic_weights) -> MimamoModel:
    checkpoint, backbone = synthetic_weights
    return MimamoModel.load(ModelConfig(str(checkpoint), str(backbone), backbone_batch_size=8, snippet_length=8,
                                        snippet_stride=6, gru_sequence_snippets=2))


def _streamed(model: MimamoModel, faces) -> Tuple[np.ndarray, np.ndarray]:
    track = model.new_track()
    snippets = [snippet for frame, time_s, rgb in faces for snippet in track.add_face(frame, time_s, rgb)]
    snippets += track.finish()
    frame_indices, _, values = stitch_snippets(snippets)
    return frame_indices, values


def _encoded(model: MimamoModel, faces, cuts: List[int]) -> List[BlockFeatures]:
    """The faces encoded in blocks [cuts[k], cuts[k + 1])."""
    blocks = []
    for start, stop in zip(cuts, cuts[1:]):
        encoder = BlockEncoder(model, start, stop - start)
        for _, _, rgb in faces[start:stop]:
            encoder.add(rgb)
        blocks.append(encoder.finish())
    return blocks


def _in_blocks(model: MimamoModel, faces, cuts: List[int]) -> Tuple[np.ndarray, np.ndarray]:
    blocks = _encoded(model, faces, cuts)
    features = join_face_features(model, blocks[::-1], len(faces))  # any order
    snippets = predict_snippets(model, features, np.array([face[0] for face in faces]),
                                np.array([face[1] for face in faces]))
    frame_indices, _, values = stitch_snippets(snippets)
    return frame_indices, values


@pytest.mark.parametrize("inner_cuts", [[], [40], [5, 6, 17, 50, 51], [1, 2, 3, 70]],
                         ids=["one block", "two blocks", "short blocks", "one-face blocks"])
def test_blocks_joined_give_the_streaming_predictor_s_numbers(model, faces, inner_cuts):
    want_frames, want = _streamed(model, faces)
    got_frames, got = _in_blocks(model, faces, [0] + inner_cuts + [len(faces)])
    assert got_frames.tolist() == want_frames.tolist()
    # Measured: identical bits on AVX-512 with AVX512_BF16 (EPYC, 2026-12-07); 1e-5 is the work units' bound,
    # room for a backbone kernel that rounds a batch of another composition differently.
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_without_recomputing_the_block_ends_the_numbers_differ(model, faces):
    """The check above can fail: features taken from the blocks as they are (windows clamped at block ends) give
    other numbers near the cuts."""
    blocks = _encoded(model, faces, [0, 30, 60, len(faces)])
    joined = join_face_features(model, blocks, len(faces)).numpy()
    as_encoded = np.concatenate([block.features for block in blocks])
    changed = np.flatnonzero(np.abs(joined - as_encoded).max(axis=1) > 0)
    half = model.config.num_phase // 2
    assert set(changed.tolist()) <= {p for cut in (30, 60) for p in range(cut - half, cut + half)}
    assert len(changed) >= 2 * half


def test_blocks_that_leave_a_position_out_are_refused(model, faces):
    encoder = BlockEncoder(model, 0, 10)
    for _, _, rgb in faces[:10]:
        encoder.add(rgb)
    with pytest.raises(ValueError, match="not at all"):
        join_face_features(model, [encoder.finish()], 12)
    with pytest.raises(ValueError, match="holds 3 faces; 1 were added"):
        short = BlockEncoder(model, 0, 3)
        short.add(faces[0][2])
        short.finish()
