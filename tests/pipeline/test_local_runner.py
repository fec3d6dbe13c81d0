"""Local runs use Beam's Python runner and never try the network (Beam's DirectRunner tries Prism first).

Beam 2.77's ``DirectRunner`` runs every pipeline that Prism supports on the Prism runner first, and
``PrismJobServer`` downloads the Prism binary from GitHub when it is not in ``~/.apache_beam/cache``
(``apache_beam/runners/direct/direct_runner.py``, ``apache_beam/runners/portability/prism_runner.py``).
"""
import socket

import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability import prism_runner
from apache_beam.runners.portability.fn_api_runner import fn_runner

from beam_pipeline.beam_compat import make_local_runner
from beam_pipeline.run import main, run
from tests import clips


class PrismTried(Exception):
    """Raised by the patched Prism runner."""


@pytest.fixture()
def prism_attempts(monkeypatch):
    """Records every attempt to start Prism (the attempt fails, as it does offline)."""
    attempts = []

    def refuse(self, *args, **kwargs):  # pylint: disable=unused-argument
        attempts.append(type(self).__name__)
        raise PrismTried("Prism was started")

    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", refuse)
    monkeypatch.setattr(prism_runner.PrismJobServer, "local_bin", refuse)
    return attempts


@pytest.fixture()
def no_network(monkeypatch):
    """Makes every connection outside loopback fail the test."""
    real_connect = socket.socket.connect
    attempts = []

    def connect(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if sock.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            attempts.append(address)
            raise OSError(f"test: network access to {address} is not allowed")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    return attempts


def test_default_runner_is_the_python_fn_api_runner_and_others_are_left_alone():
    assert isinstance(make_local_runner(PipelineOptions([])), fn_runner.FnApiRunner)
    assert isinstance(make_local_runner(PipelineOptions(["--runner=DirectRunner"])), fn_runner.FnApiRunner)
    assert make_local_runner(PipelineOptions(["--runner=PortableRunner"])) is None


def test_a_local_run_never_starts_prism_nor_touches_the_network(tmp_path, synthetic_weights, prism_attempts,
                                                                no_network):
    clips.no_face_clip(tmp_path / "still.mp4", n_frames=4)
    checkpoint, backbone = synthetic_weights
    output = tmp_path / "out"
    result = run(["--input", str(tmp_path / "still.mp4"), "--output", str(output), "--checkpoint", str(checkpoint),
                  "--backbone", str(backbone), "--length", "16", "--stride", "16"])
    assert (prism_attempts, no_network) == ([], [])
    assert isinstance(result.result, fn_runner.RunnerResult)
    assert pq.read_table(output / "videos").column("status").to_pylist() == ["no_face"]


def test_python_m_beam_pipeline_run_returns_3_when_an_input_failed(tmp_path, synthetic_weights, capsys):
    clips.no_face_clip(tmp_path / "still.mp4", n_frames=4)
    checkpoint, backbone = synthetic_weights
    status = main(["--input", str(tmp_path / "still.mp4"), "--input", str(tmp_path / "missing.mp4"),
                   "--output", str(tmp_path / "out"), "--checkpoint", str(checkpoint), "--backbone", str(backbone),
                   "--length", "16", "--stride", "16"])
    assert status == 3
    assert "1 input(s) failed" in capsys.readouterr().err
    assert main(["--input", str(tmp_path / "still.mp4"), "--output", str(tmp_path / "out")]) == 2  # holds tables
