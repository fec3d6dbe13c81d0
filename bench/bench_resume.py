"""What resumability costs: the same local run with one commit per video against one write at the end.

    .venv/bin/python bench/bench_resume.py [--videos 6] [--frames 20]

Runs ``--videos`` one-face clips of ``--frames`` frames (640x360) twice in this process, with
``--videos_per_commit 1`` and with ``--videos_per_commit 0`` (one pipeline, not resumable), and prints both wall
times, the cost per extra commit ``(t_1 - t_0) / (videos - 1)`` and the files each output holds. The numbers
depend on the machine and its load; nothing here asserts them.
"""
import argparse
import pathlib
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_pipeline import get_weights  # noqa: E402  (after the sys.path line)
from beam_pipeline.run import run  # noqa: E402
from tests import clips  # noqa: E402


def timed_run(folder: pathlib.Path, output: pathlib.Path, checkpoint, backbone, videos_per_commit: int) -> float:
    started = time.perf_counter()
    run(["--input", str(folder), "--output", str(output), "--checkpoint", str(checkpoint), "--backbone",
         str(backbone), "--videos_per_commit", str(videos_per_commit)])
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--frames", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-resume-") as temp:
        temp = pathlib.Path(temp)
        checkpoint, backbone, described = get_weights(temp)
        folder = temp / "clips"
        folder.mkdir()
        for index in range(args.videos):
            clips.moving_face_clip(folder / f"clip{index:03d}.mp4", n_frames=args.frames)
        print(f"{args.videos} clips of {args.frames} frames; {described}")
        timed_run(folder, temp / "warm-up", checkpoint, backbone, 0)  # imports, caches
        per_video = timed_run(folder, temp / "per-video", checkpoint, backbone, 1)
        once = timed_run(folder, temp / "once", checkpoint, backbone, 0)
        for value, seconds, output in ((1, per_video, "per-video"), (0, once, "once")):
            files = sum(1 for path in (temp / output).rglob("*") if path.is_file())
            print(f"--videos_per_commit {value}: {seconds:.1f} s, {files} files")
        print(f"cost per extra commit: {(per_video - once) / max(args.videos - 1, 1):.2f} s; "
              f"ratio {per_video / once:.2f}")


if __name__ == "__main__":
    main()
