"""``mimamo plot``: trend PNGs, seed CSVs and annotated videos drawn from a run's Parquet tables."""
import argparse
import csv

import numpy as np
import pytest
from PIL import Image

from beam_pipeline.cli.commands import plot as plot_command
from beam_pipeline.cli.report import VideoRecord
from beam_pipeline.rows import compute_video_id
from mimamo_ops.decoding.video import iter_frames, probe_video
from mimamo_ops.outputs.plots import face_color_rgb
from tests import clips
from tests.pipeline.test_report import write_run_tables


def run_plot(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    plot_command.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["plot", *argv])
    return args.handler(args, [])


@pytest.fixture(scope="module")
def clip_paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plot_clips")
    return (clips.moving_face_clip(folder / "one_face.mp4", n_frames=30),
            clips.two_faces_clip(folder / "two_faces.mp4", n_frames=24))


@pytest.fixture()
def run_output(tmp_path, clip_paths):
    one_face, two_faces = clip_paths
    return write_run_tables(tmp_path / "run", str(one_face), str(two_faces))


def test_every_video_that_did_not_fail_gets_a_plot(run_output):
    assert run_plot(str(run_output)) == 0
    written = sorted(path.name for path in (run_output / "plots").iterdir())
    assert written == ["no_face_va_trend.png", "one_face_va_trend.png", "two_faces_va_trend.png"]
    for name in written:
        with Image.open(run_output / "plots" / name) as image:
            assert image.size == (1200, 600)
    two_faces = np.asarray(Image.open(run_output / "plots" / "two_faces_va_trend.png").convert("RGB"))
    for face_id in (0, 1):  # both faces' bold curves are drawn in their colours
        assert np.all(two_faces == np.asarray(face_color_rgb(face_id), np.uint8), axis=-1).sum() > 1500


def test_one_video_with_its_seed_csv(run_output, clip_paths, tmp_path):
    out_dir = tmp_path / "chosen"
    assert run_plot(str(run_output), "--video", compute_video_id(str(clip_paths[1])), "--out", str(out_dir),
                    "--csv") == 0
    assert sorted(path.name for path in out_dir.iterdir()) == ["two_faces_va_preds.csv", "two_faces_va_trend.png"]
    with open(out_dir / "two_faces_va_preds.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["valence", "arousal", "s", "face"] and len(rows) == 41
    assert rows[1][3:] == ["0"] and rows[2][3:] == ["1"]


def test_a_failed_video_has_nothing_to_plot(run_output):
    with pytest.raises(ValueError, match="failed on this video at stage read"):
        run_plot(str(run_output), "--video", "corrupt.mp4")


def test_annotated_video_has_the_source_frames_and_the_face_box(run_output, clip_paths):
    assert run_plot(str(run_output), "--video", "one_face.mp4", "--annotated-video") == 0
    annotated_path = run_output / "plots" / "one_face_annotated.mp4"
    info = probe_video(annotated_path)
    assert (info.width, info.height, info.frame_count) == (640, 360, 30)
    annotated = {frame.index: frame.rgb for frame in iter_frames(annotated_path)}
    colour = np.asarray(face_color_rgb(0))
    top_edge = lambda rgb: rgb[50, 120:160].astype(np.int32)  # the box is (100, 50, 180, 150) in every row
    assert np.abs(np.median(top_edge(annotated[0]), axis=0) - colour).max() < 45
    source = {frame.index: frame.rgb for frame in iter_frames(clip_paths[0])}
    assert np.abs(top_edge(annotated[12]) - top_edge(source[12])).mean() < 8  # frame 12: no face, no box


def test_annotated_video_needs_a_local_file(tmp_path):
    output = write_run_tables(tmp_path / "run", "gs://bucket/one_face.mp4", "/gone/two_faces.mp4")
    with pytest.raises(ValueError, match="needs the video on this machine"):
        run_plot(str(output), "--video", "one_face.mp4", "--annotated-video")
    with pytest.raises(FileNotFoundError, match="not there any more"):
        run_plot(str(output), "--video", "two_faces.mp4", "--annotated-video")


def test_videos_sharing_a_file_name_get_their_id_in_the_stem():
    videos = [VideoRecord(uri, compute_video_id(uri), "ok", None, None, None, None, None)
              for uri in ("/a/talk.mp4", "/b/talk.mp4", "/a/other.mkv")]
    stems = plot_command.assign_stems(videos)
    assert stems[compute_video_id("/a/talk.mp4")] == f"talk-{compute_video_id('/a/talk.mp4')}"
    assert stems[compute_video_id("/b/talk.mp4")] == f"talk-{compute_video_id('/b/talk.mp4')}"
    assert stems[compute_video_id("/a/other.mkv")] == "other"
