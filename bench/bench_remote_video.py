"""Reading a remote video: copied to the temp disk, or decoded straight from storage, on this machine.

Run: ``.venv/bin/python bench/bench_remote_video.py [--frames 600] [--repeats 3]``. A local Cloud Storage emulator
(``gcp-storage-emulator``, 127.0.0.1) holds one real-footage-like clip (``tests.clips.moving_face_clip``,
640x360 H.264); each way probes and decodes every frame, without the face stage, so that the reading costs show:

* ``local``: the file on disk (the floor);
* ``copy``: ``open_video_source`` with no budget (download to the temp folder, then decode the copy);
* ``stream, in process``: a ``RemoteVideo`` over the budget, decoded in this process;
* ``copy, isolated`` and ``stream, isolated``: the same two through the supervised face stage's child (which
  reads a streamed video's bytes through this process, ``mimamo_ops.faces.served_source``).

Prints the median of ``--repeats`` runs after one warm-up, in frames/s, and each way's ratio to ``copy`` (all in
this run). The emulator is a Python server on the same machine: it is slower than Cloud Storage per byte and has
no network latency, so the ratios say what the streaming path costs here, not on a cloud worker.
"""
import argparse
import os
import pathlib
import sys
import tempfile
from typing import Iterator

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from apache_beam.io.filesystems import FileSystems  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from bench.timing import time_runs  # noqa: E402
from beam_pipeline.beam_compat import use_anonymous_gcs_for_emulator  # noqa: E402
from beam_pipeline.remote_files import open_video_source  # noqa: E402
from mimamo_ops.decoding.video import DecodeReport, iter_frames, probe_video  # noqa: E402
from mimamo_ops.faces.isolated_stage import IsolatedFaceStage  # noqa: E402
from mimamo_ops.faces.isolation import IsolationConfig  # noqa: E402
from mimamo_ops.faces.records import FaceConfig, FaceExtractor, FrameFaces  # noqa: E402
from tests import clips  # noqa: E402
from tests.local_servers import BUCKET, free_port, serve  # noqa: E402


class DecodeOnly(FaceExtractor):
    """A face stage that decodes every frame and finds no face (built in the child process)."""

    def __init__(self, config: FaceConfig):
        self.config = config

    def extract(self, video_path, report=None) -> Iterator[FrameFaces]:
        for frame in iter_frames(video_path, report=report):
            yield FrameFaces(frame.index, frame.timestamp_s, ())


def decode_all(source) -> int:
    probe_video(source)
    return sum(1 for _ in iter_frames(source, report=DecodeReport()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1800)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        clip = clips.moving_face_clip(pathlib.Path(folder) / "clip.mp4", n_frames=args.frames)
        size_mb = clip.stat().st_size / (1 << 20)
        port = free_port()
        command = [sys.executable, "-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1", "--port",
                   str(port), "--in-memory", "--default-bucket", BUCKET, "--quiet"]
        with serve(command, port, "the Cloud Storage emulator"):
            os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
            use_anonymous_gcs_for_emulator()
            FileSystems.set_options(PipelineOptions([]))
            uri = f"gs://{BUCKET}/bench/clip.mp4"
            with open(clip, "rb") as source, FileSystems.create(uri) as target:
                target.write(source.read())

            def copied() -> int:
                with open_video_source(uri) as path:
                    return decode_all(path)

            def streamed() -> int:
                with open_video_source(uri, disk_budget_bytes=0) as source:
                    return decode_all(source)

            # by its importable name (not __main__'s), so that the child can unpickle it
            from bench.bench_remote_video import DecodeOnly as factory  # pylint: disable=import-outside-toplevel
            with IsolatedFaceStage(FaceConfig(), 1, IsolationConfig(), factory) as stage:
                stage.wait_ready()

                def isolated(budget_bytes) -> int:
                    with open_video_source(uri, disk_budget_bytes=budget_bytes) as source:
                        return sum(1 for _ in stage.open_video(source).frames)

                ways = {"local": lambda: decode_all(str(clip)), "copy": copied, "stream, in process": streamed,
                        "copy, isolated": lambda: isolated(None), "stream, isolated": lambda: isolated(0)}
                timings = {name: time_runs(fn, args.repeats) for name, fn in ways.items()}
    print(f"clip: {args.frames} frames 640x360 H.264, {size_mb:.1f} MB, on the local Cloud Storage emulator; "
          f"median of {args.repeats} after a warm-up")
    for name, timing in timings.items():
        assert timing.result == args.frames, (name, timing.result)
        ratio = timings["copy"].median_s / timing.median_s
        print(f"  {name:20s} {timing.median_s:6.2f} s  {args.frames / timing.median_s:7.1f} frames/s  "
              f"{ratio:4.2f}x the copy's speed")


if __name__ == "__main__":
    main()
