"""``--backbone_sharing machine``: the worker processes of a machine share one backbone (``MachineBackbone``).

Real processes: the first to ask loads the backbone and serves it; another process's faces are computed by that
same network (the stats name the host's pid) and come back equal to a backbone of its own. When the host is
killed, the next call of the other process connects again and loads the backbone itself.
"""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from beam_pipeline.model_loading import backbone_sharing_for
from mimamo_ops.model.backbone_runner import BackboneRunner
from tests.ops.test_predictor import moving_faces

ROOT = Path(__file__).resolve().parents[2]


class _Client:
    """One ``backbone_client`` process; ``compute(name)`` has it compute and returns (features, stats)."""

    def __init__(self, weights, tag: str, faces: Path, out: Path, env):
        checkpoint, backbone = weights
        self.out = out
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.pipeline.backbone_client", str(checkpoint), str(backbone), tag,
             str(faces), str(out)],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self._line() == "connected"

    def _line(self) -> str:
        line = self.process.stdout.readline()
        assert line, f"backbone_client {self.process.pid} ended (exit {self.process.poll()})"
        return line.strip()

    def compute(self, name: str):
        self.process.stdin.write(name + "\n")
        self.process.stdin.flush()
        stats = json.loads(self._line())
        return np.load(self.out / f"{name}.npy"), stats

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)


def test_processes_share_one_backbone_and_load_it_again_when_its_host_dies(synthetic_weights, tmp_path):
    faces = moving_faces(11, seed=8)
    np.save(tmp_path / "faces.npy", faces)
    expected = BackboneRunner.from_file(synthetic_weights[1], batch_size=8).features(faces)
    env = dict(os.environ, TMPDIR=str(tmp_path), PYTHONPATH=str(ROOT))  # the shared object's files go there
    tag = "mimamo-backbone-test"
    clients = []
    try:
        host = _Client(synthetic_weights, tag, tmp_path / "faces.npy", tmp_path, env)
        clients.append(host)
        features, stats = host.compute("host")
        assert stats["pid"] == host.process.pid
        np.testing.assert_allclose(features, expected, rtol=1e-6, atol=0)

        other = _Client(synthetic_weights, tag, tmp_path / "faces.npy", tmp_path, env)
        clients.append(other)
        features, stats = other.compute("other")
        assert stats["pid"] == host.process.pid  # computed by the host's network: one backbone on the machine
        assert stats["faces"] == 2 * len(faces)
        np.testing.assert_allclose(features, expected, rtol=1e-6, atol=0)

        host.process.send_signal(signal.SIGKILL)
        host.process.wait(timeout=30)
        features, stats = other.compute("after")
        assert stats["pid"] == other.process.pid and stats["faces"] == len(faces)  # loaded anew, here
        np.testing.assert_allclose(features, expected, rtol=1e-6, atol=0)
    finally:
        for client in clients:
            client.stop()


def test_auto_sharing_is_one_backbone_per_machine_on_a_gpu_and_one_per_process_on_the_cpu():
    assert backbone_sharing_for("auto", "cuda:0") == "machine"
    assert backbone_sharing_for("auto", "cpu") == "process"
    assert backbone_sharing_for("machine", "cpu") == "machine"
    assert backbone_sharing_for("process", "cuda") == "process"
    with pytest.raises(ValueError, match="backbone_sharing"):
        backbone_sharing_for("gpu", "cpu")
