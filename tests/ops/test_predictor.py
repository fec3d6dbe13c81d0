"""The streaming predictor equals the original's batch semantics (spec 4.4, 6, 9), whatever the compute split."""
import numpy as np
import pytest
import torch

from mimamo_ops.model import snippets as snip
from mimamo_ops.model.phase import PhaseDifferenceExtractor
from mimamo_ops.model.predictor import MimamoModel, ModelConfig, stitch_snippets
from mimamo_ops.model.two_stream import TwoStreamRNN
from tests.parity_recipes import gen_state_dict, render, wave_params


class ProjectionBackbone:
    """A small deterministic stand-in for ResNet-50: mean-pooled 16x16 RGB times a seeded matrix, ReLU.

    The backbone is per-face, so the streaming logic under test does not depend on which one is used;
    the real ResNet-50 runs in ``test_real_backbone_track``.
    """

    def __init__(self, seed: int = 0):
        self.weight = np.random.default_rng(seed).normal(0, 0.05, size=(16 * 16 * 3, 2048)).astype(np.float32)

    def features(self, faces: np.ndarray) -> np.ndarray:
        pooled = faces.reshape(len(faces), 16, 7, 16, 7, 3).mean(axis=(2, 4)).reshape(len(faces), -1)
        return np.maximum(pooled.astype(np.float32) @ self.weight, 0.0)


def moving_faces(num_faces: int, seed: int = 5) -> np.ndarray:
    """uint8 (N, 112, 112, 3): a smooth texture per channel, drifting sub-pixel from face to face."""
    rng = np.random.default_rng(seed)
    params = [wave_params(rng, 6) for _ in range(3)]
    faces = np.empty((num_faces, 112, 112, 3), dtype=np.uint8)
    for i in range(num_faces):
        dy, dx = 1.5 * np.sin(i / 4.0), 2.0 * np.sin(i / 7.0)
        for c in range(3):
            faces[i, :, :, c] = render(params[c], 112, 112, dy=dy, dx=dx)
    return faces


def make_model(config: ModelConfig, backbone=None) -> MimamoModel:
    network = TwoStreamRNN().eval()
    network.load_state_dict(gen_state_dict(network.state_dict(), 3003))
    return MimamoModel(config, backbone or ProjectionBackbone(), network, PhaseDifferenceExtractor().eval())


def reference_predictions(model: MimamoModel, faces: np.ndarray) -> np.ndarray:
    """The original's computation: all snippets materialised, phase per window, GRU over snippet batches."""
    config = model.config
    num_faces = len(faces)
    rgb = torch.from_numpy(model.backbone.features(faces))
    grey = torch.from_numpy(snip.prepare_phase_images(list(faces)))
    ranges = snip.snippet_ranges(num_faces, config.snippet_length, config.snippet_stride)
    outputs = []
    with torch.inference_mode():
        for chunk in snip.chunk_snippets(len(ranges), config.gru_sequence_snippets):
            positions = [np.arange(*ranges[i]) for i in chunk]
            windows = np.stack([snip.window_positions(p, num_faces) for p in positions])
            phase_0, phase_1 = model.phase.snippet_differences(grey[torch.from_numpy(windows)])
            batch_rgb = torch.stack([rgb[torch.from_numpy(p)] for p in positions])
            outputs.extend(model.network([phase_0, phase_1], batch_rgb).numpy())
    return snip.stitch_ranges(num_faces, ranges, outputs)


def run_track(model: MimamoModel, faces: np.ndarray, frame_offset: int = 10):
    track = model.new_track()
    emitted = []
    for i, face in enumerate(faces):
        emitted.extend(track.add_face(frame_offset + 2 * i, (frame_offset + 2 * i) / 30.0, face))
    emitted.extend(track.finish())
    return emitted


@pytest.mark.parametrize(
    "num_faces, batch_size, gru_snippets, length",
    [(1, 4, 64, 64), (20, 8, 64, 64), (64, 32, 64, 64), (150, 32, 64, 64), (150, 7, 2, 64), (90, 16, 2, 16)],
)
def test_streaming_equals_the_original_batch_semantics(num_faces, batch_size, gru_snippets, length):
    config = ModelConfig("unused", "unused", backbone_batch_size=batch_size, gru_sequence_snippets=gru_snippets,
                         snippet_length=length, snippet_stride=length)
    model = make_model(config)
    faces = moving_faces(num_faces)
    frame_indices, timestamps, values = stitch_snippets(run_track(model, faces))
    expected = reference_predictions(model, faces)
    assert values.shape == (num_faces, 2) and values.dtype == np.float32
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-5)
    assert frame_indices.tolist() == [10 + 2 * i for i in range(num_faces)]
    np.testing.assert_allclose(timestamps, (10 + 2 * np.arange(num_faces)) / 30.0)


def test_results_do_not_depend_on_the_backbone_batch_size():
    """Equal up to float rounding: BLAS and FFT kernels may block a batch of 1 and of 32 differently."""
    faces = moving_faces(150)
    results = []
    for batch_size in (1, 5, 32):
        model = make_model(ModelConfig("unused", "unused", backbone_batch_size=batch_size, gru_sequence_snippets=2))
        results.append(stitch_snippets(run_track(model, faces))[2])
    np.testing.assert_allclose(results[1], results[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(results[2], results[0], rtol=0, atol=1e-5)


def test_gru_sequence_option_changes_results():
    faces = moving_faces(200)
    one = stitch_snippets(run_track(make_model(ModelConfig("u", "u", gru_sequence_snippets=1)), faces))[2]
    four = stitch_snippets(run_track(make_model(ModelConfig("u", "u", gru_sequence_snippets=4)), faces))[2]
    assert np.abs(one - four).max() > 1e-4


def test_full_sequences_are_emitted_before_the_track_ends():
    model = make_model(ModelConfig("u", "u", backbone_batch_size=8, gru_sequence_snippets=2, snippet_length=16,
                                   snippet_stride=16))
    track = model.new_track()
    early = []
    for i, face in enumerate(moving_faces(80)):
        early.extend(track.add_face(i, i / 30.0, face))
    # 2 sequences of 2 snippets of 16 faces (positions 0..63) are final once positions up to 69 are encoded.
    assert [p.snippet_index for p in early] == [0, 1, 2, 3]
    rest = track.finish()
    assert [p.snippet_index for p in rest] == [4]
    assert rest[0].positions.tolist() == list(range(64, 80))


def test_memory_stays_bounded_over_a_long_track():
    model = make_model(ModelConfig("u", "u", backbone_batch_size=16, gru_sequence_snippets=1, snippet_length=16,
                                   snippet_stride=16))
    track = model.new_track()
    face = moving_faces(1)[0]
    sizes = []
    for i in range(400):
        track.add_face(i, i / 30.0, face)
        sizes.append(sum(len(b._blocks) for b in (track._rgb, track._coefficients, track._features, track._frame_indices)))
    assert max(sizes[200:]) <= max(sizes[:200])


@pytest.mark.parametrize("name, value", [("num_phase", 6), ("nbands", 4), ("phase_size", 64), ("scale_factor", 3.0)])
def test_options_fixed_by_the_checkpoint_are_rejected(name, value):
    with pytest.raises(ValueError, match=name):
        ModelConfig("u", "u", **{name: value})
