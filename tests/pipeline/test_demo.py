"""``make demo`` (``python -m beam_pipeline.demo``) with weights already in the user cache, and offline."""
import pytest

from beam_pipeline import demo
from mimamo_ops.video import probe_video
from mimamo_ops.checkpoints import BACKBONE, MIMAMO
from mimamo_ops.weights import OFFICIAL_URLS, import_weights


@pytest.fixture()
def cache_with_weights(tmp_path, synthetic_weights, monkeypatch):
    cache = tmp_path / "cache"
    import_weights([str(path) for path in synthetic_weights], cache_dir=str(cache))
    monkeypatch.setenv("MIMAMO_CACHE_DIR", str(cache))
    return cache


def test_demo_runs_the_pipeline_on_the_sample_clip_and_prints_rows(tmp_path, cache_with_weights, capsys):
    workdir = tmp_path / "demo"
    demo.write_sample_clip(workdir / "sample.mp4", seconds=1)  # the demo keeps an existing clip; 1 s keeps this fast
    assert demo.main(["--workdir", str(workdir)]) == 0
    info = probe_video(str(workdir / "sample.mp4"))
    assert (info.width, info.height, info.frame_count) == (640, 360, 30)
    out = capsys.readouterr().out
    assert "ok" in out and "valence_smoothed" in out
    assert list((workdir / "results" / "frames").glob("*.parquet"))


def test_demo_offline_says_how_to_place_the_weights(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MIMAMO_CACHE_DIR", str(tmp_path / "empty-cache"))
    # Port 9 (discard) on loopback refuses connections: the network is never touched.
    monkeypatch.setitem(OFFICIAL_URLS, MIMAMO, "http://127.0.0.1:9/model_weights.pth.tar")
    monkeypatch.setitem(OFFICIAL_URLS, BACKBONE, "http://127.0.0.1:9/resnet50_ferplus_dag.pth")
    assert demo.main(["--workdir", str(tmp_path / "demo")]) == 1
    err = capsys.readouterr().err
    assert "mimamo weights import" in err and "127.0.0.1:9" in err
