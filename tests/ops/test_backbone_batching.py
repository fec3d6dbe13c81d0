"""One backbone fed by several tracks at once (``BatchingBackbone``): faces of different tracks share forward
passes, and every track gets the numbers it gets with a backbone of its own.

Measured on this project's CI machine (AMD EPYC, AVX-512): the features and the predictions of shared batches are
bit-identical to per-track batches (max difference 0.0), because the network computes each face from that face
alone. The assertions allow 1e-5 on valence and arousal, the bound the streaming predictor's tests use for other
compute splits, since a CPU's kernels may block a batch of another size differently.
"""
import threading

import numpy as np
import pytest

from mimamo_ops.model.backbone_batching import BatchingBackbone
from mimamo_ops.model.backbone_runner import BackboneRunner
from mimamo_ops.model.checkpoints import BACKBONE
from mimamo_ops.model.predictor import ModelConfig, stitch_snippets
from mimamo_ops.weights.standins import seeded_state_dict
from tests.ops.test_predictor import make_model, moving_faces, run_track

TRACKS = ((23, 1), (9, 2), (40, 3))  # (faces, seed): tracks of three videos, one shorter than a request


@pytest.fixture(scope="module")
def runner() -> BackboneRunner:
    """The real ResNet-50 FER+ network with seeded weights, 16 faces per forward pass."""
    return BackboneRunner(seeded_state_dict(BACKBONE, 4004), batch_size=16)


def _config(request_faces: int) -> ModelConfig:
    return ModelConfig("unused", "unused", backbone_batch_size=request_faces, gru_sequence_snippets=2,
                       snippet_length=16, snippet_stride=16)


def _run_at_once(model, tracks):
    """Runs every track in its own thread, all started together; returns their valence/arousal in order."""
    results = [None] * len(tracks)
    start = threading.Barrier(len(tracks))

    def run(index):
        start.wait()
        results[index] = stitch_snippets(run_track(model, tracks[index]))[2]

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(tracks))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_tracks_of_several_videos_share_batches_and_get_their_own_numbers(runner):
    tracks = [moving_faces(count, seed) for count, seed in TRACKS]
    alone = [stitch_snippets(run_track(make_model(_config(16), backbone=runner), faces))[2] for faces in tracks]

    batcher = BatchingBackbone(runner, gather_wait_s=0.5)  # long enough that the threads' requests meet
    shared = _run_at_once(make_model(_config(8), backbone=batcher), tracks)  # requests of 8: two fill a batch
    batcher.close()

    stats = batcher.stats()
    assert stats["faces"] == sum(count for count, _ in TRACKS)
    assert stats["shared_batches"] >= 1, stats
    assert stats["batches"] < sum(-(-count // 8) for count, _ in TRACKS), stats  # fewer passes than requests
    for own, together in zip(alone, shared):
        assert together.shape == own.shape
        np.testing.assert_allclose(together, own, rtol=0, atol=1e-5)


def test_a_request_larger_than_a_batch_is_split_and_put_back_in_order(runner):
    faces = moving_faces(37, seed=4)
    batcher = BatchingBackbone(runner, gather_wait_s=0.0)
    features = batcher.features(faces)
    batcher.close()
    assert batcher.stats()["batches"] == 3  # 16 + 16 + 5
    np.testing.assert_allclose(features, runner.features(faces), rtol=1e-6, atol=0)
    assert batcher.features.__self__ is batcher and batcher.compute_batch_size() == 16


class _FailingOnce:
    """A runner whose first forward pass fails as a device would (out of memory), then works."""

    def __init__(self, runner):
        self._runner = runner
        self.batch_size = 4
        self.failed = False

    def features_from_resized(self, resized):
        if not self.failed:
            self.failed = True
            raise RuntimeError("CUDA out of memory (simulated)")
        return self._runner.features_from_resized(resized)


def test_a_failed_pass_reaches_every_caller_of_its_batch_and_the_next_requests_still_run(runner):
    batcher = BatchingBackbone(_FailingOnce(runner), gather_wait_s=2.0)
    faces = moving_faces(4, seed=6)
    errors = []

    def call(part):
        try:
            batcher.features(part)
        except RuntimeError as error:
            errors.append(str(error))

    threads = [threading.Thread(target=call, args=(faces[i:i + 2],)) for i in (0, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == ["CUDA out of memory (simulated)"] * 2
    np.testing.assert_allclose(batcher.features(faces), runner.features(faces), rtol=1e-6, atol=0)
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.features(faces)
    assert batcher.features(faces[:0]).shape == (0, 2048)
