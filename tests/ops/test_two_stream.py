"""TwoStreamRNN: checkpoint layout, parity case 3, and the GRU-over-snippets quirk (spec 4)."""
import numpy as np
import pytest
import torch

from mimamo_ops.model.phase import PhaseDifferenceExtractor
from mimamo_ops.model.two_stream import TwoStreamRNN
from tests.parity_recipes import gen_state_dict, render, wave_params

from .expected import load_expected


def _seeded_network(seed: int = 3003) -> TwoStreamRNN:
    network = TwoStreamRNN().eval()
    network.load_state_dict(gen_state_dict(network.state_dict(), seed))
    return network


def _case3_inputs():
    """Rebuilds case 3's rgb features and 13-frame snippets from the parity README recipe."""
    rng = np.random.default_rng(3004)
    rgb = rng.uniform(0.0, 2.0, size=(2, 64, 2048)).astype(np.float32)
    snippet = np.empty((2, 64, 13, 48, 48), dtype=np.uint8)
    for b in (0, 1):
        params = wave_params(rng, 8)
        frames = [
            render(params, 48, 48, dy=0.8 * np.sin(2 * np.pi * g / 13 + b), dx=1.1 * np.sin(2 * np.pi * g / 10 + 0.5 * b))
            for g in range(76)
        ]
        for w in range(64):
            snippet[b, w] = np.stack(frames[w : w + 13])
    return rgb, snippet


def test_state_dict_has_the_107_official_keys_and_shapes():
    state = TwoStreamRNN().state_dict()
    assert len(state) == 107
    assert sum(p.numel() for p in TwoStreamRNN().parameters()) == 2_636_425
    assert state["phasenet.conv_net.1.0.weight"].shape == (128, 88, 3, 3)
    assert state["rnns.weight_hh_l1_reverse"].shape == (384, 128)
    assert state["classifier.2.num_batches_tracked"].dtype == torch.int64


def test_seeded_weights_match_the_parity_spot_values():
    state = gen_state_dict(TwoStreamRNN().state_dict(), 3003)
    np.testing.assert_allclose(state["classifier.1.bias"].numpy(), [-0.04598058, 0.00383129], rtol=0, atol=1e-8)
    np.testing.assert_allclose(
        state["rnns.weight_ih_l0"].flatten()[:3].numpy(), [0.07207030, -0.08086068, -0.00680260], rtol=0, atol=1e-8
    )


def test_case3_output_matches_the_original_within_1e_5():
    rgb, snippet = _case3_inputs()
    network = _seeded_network()
    extractor = PhaseDifferenceExtractor()
    with torch.inference_mode():
        phase_0, phase_1 = extractor.snippet_differences(torch.from_numpy(snippet.astype(np.float32) / np.float32(255)))
        output = network([phase_0, phase_1], torch.from_numpy(rgb))
    expected = load_expected("case3_mimamo_expected.npz")["output"]
    assert output.shape == (2, 64, 2) and output.dtype == torch.float32
    np.testing.assert_allclose(output.numpy(), expected, rtol=0, atol=1e-5)


def test_split_forward_equals_the_original_call():
    torch.manual_seed(0)
    network = _seeded_network(7)
    rgb = torch.rand(3, 5, 2048)
    phase_0 = torch.randn(3, 5, 24, 48, 48)
    phase_1 = torch.randn(3, 5, 24, 24, 24)
    with torch.inference_mode():
        whole = network([phase_0, phase_1], rgb)
        features = network.frame_features(rgb.flatten(0, 1), phase_0.flatten(0, 1), phase_1.flatten(0, 1))
        split = network.sequence_head(features.reshape(3, 5, -1))
    torch.testing.assert_close(split, whole, rtol=0, atol=1e-6)


def test_gru_recurs_over_snippets_at_each_frame_position():
    """Spec 4.4: changing frame 2 of snippet 0 changes frame 2 of every snippet and nothing else."""
    torch.manual_seed(1)
    network = _seeded_network(11)
    features = torch.randn(4, 6, 256)
    changed = features.clone()
    changed[0, 2] += 1.0
    with torch.inference_mode():
        delta = (network.sequence_head(changed) - network.sequence_head(features)).abs().amax(dim=2)
    assert torch.all(delta[:, 2] > 1e-6)
    assert torch.all(delta[:, [0, 1, 3, 4, 5]] == 0)


@pytest.mark.parametrize("num_snippets", [1, 3])
def test_sequence_head_shapes(num_snippets):
    network = _seeded_network(5)
    with torch.inference_mode():
        out = network.sequence_head(torch.zeros(num_snippets, 64, 256))
    assert out.shape == (num_snippets, 64, 2)
