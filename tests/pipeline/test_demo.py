"""``make demo`` (``python -m beam_pipeline.cli.demo``) with the official weights in the cache, and offline."""
import socket

import pyarrow.parquet as pq
import pytest

from beam_pipeline.cli import demo
from mimamo_ops.decoding.video import probe_video
from mimamo_ops.weights.cache import import_weights
from mimamo_ops.weights.standins import OFFICIAL_NOTE, STAND_IN_NOTE


@pytest.fixture()
def cache_with_weights(tmp_path, synthetic_weights, monkeypatch):
    cache = tmp_path / "cache"
    import_weights([str(path) for path in synthetic_weights], cache_dir=str(cache))
    monkeypatch.setenv("MIMAMO_CACHE_DIR", str(cache))
    return cache


@pytest.fixture()
def offline(monkeypatch):
    """No network: every connection outside loopback fails at once, as on a machine with no route out."""
    real_connect = socket.socket.connect
    attempts = []

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1"):
            attempts.append(address)
            raise OSError(101, "Network is unreachable")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", _offline_getaddrinfo(socket.getaddrinfo))
    return attempts


def _offline_getaddrinfo(real):
    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real(host, *args, **kwargs)
    return getaddrinfo


def weights_note(results) -> str:
    return pq.read_schema(next((results / "videos").glob("*.parquet"))).metadata[b"mimamo.weights"].decode()


def test_demo_uses_the_cached_official_weights_and_prints_rows(tmp_path, cache_with_weights, capsys, offline):
    workdir = tmp_path / "demo"
    demo.write_sample_clip(workdir / "sample.mp4", seconds=1)  # the demo keeps an existing clip; 1 s keeps this fast
    assert demo.main(["--workdir", str(workdir)]) == 0
    info = probe_video(str(workdir / "sample.mp4"))
    assert (info.width, info.height, info.frame_count) == (640, 360, 30)
    captured = capsys.readouterr()
    assert "ok" in captured.out and "valence_smoothed" in captured.out
    assert "STAND-IN" not in captured.err and "stand-in" not in captured.out
    assert weights_note(workdir / "results") == OFFICIAL_NOTE
    assert offline == []  # verified cached weights need no download
    assert not (workdir / "stand-in-weights").exists()


def test_demo_offline_with_an_empty_cache_runs_on_stand_in_weights_and_says_so(tmp_path, monkeypatch, capsys,
                                                                                offline):
    monkeypatch.setenv("MIMAMO_CACHE_DIR", str(tmp_path / "empty-cache"))
    workdir = tmp_path / "demo"
    demo.write_sample_clip(workdir / "sample.mp4", seconds=1)
    assert demo.main(["--workdir", str(workdir)]) == 0
    captured = capsys.readouterr()
    assert "valence_smoothed" in captured.out and "ok" in captured.out
    assert f"NOTE: these rows come from {STAND_IN_NOTE}." in captured.out
    err = captured.err
    assert "the official MIMAMO-Net weights are not available" in err and "STAND-IN weights" in err
    assert "mimamo weights import FILE" in err
    assert max(len(line) for line in err.splitlines()) <= 200, err  # several short lines, not one long one
    assert weights_note(workdir / "results") == STAND_IN_NOTE
    assert list((tmp_path / "empty-cache").glob("*.pth*")) == []  # nothing posing as official in the cache


def test_demo_offline_flag_never_tries_the_network(tmp_path, monkeypatch, capsys, offline):
    monkeypatch.setenv("MIMAMO_CACHE_DIR", str(tmp_path / "empty-cache"))
    workdir = tmp_path / "demo"
    demo.write_sample_clip(workdir / "sample.mp4", seconds=1)
    assert demo.main(["--workdir", str(workdir), "--offline"]) == 0
    assert offline == [] and "STAND-IN" in capsys.readouterr().err
    assert weights_note(workdir / "results") == STAND_IN_NOTE
