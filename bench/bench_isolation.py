"""End-to-end cost of running the face stage in a supervised child process (the default) against running it in
the worker process (``--face_stage_in_process``). From the repository root:

    .venv/bin/python bench/bench_isolation.py [--seconds 10] [--pairs 5]

Each run is a fresh ``python -m beam_pipeline.run`` process (DirectRunner) on the same one-face 640x360 clip
(``beam_pipeline.cli.demo.write_sample_clip``, 30 fps) with the same weights and flags, so its wall time holds
what a user waits for: interpreter start, model loading (and, isolated, the child's start and its models), decode,
faces, networks and Parquet. The two variants alternate within each pair, the first of a pair alternating too, so
that drift of a shared machine falls on both. Printed: every run's wall time, each pair's ratio isolated /
in-process, and the medians. Nothing here asserts the numbers.

Weights: the official files from the user cache when present, else seeded weights in the official formats (same
compute cost), as ``bench_pipeline.py``.
"""
import argparse
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from typing import List

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_pipeline import get_weights, pipeline_flags  # noqa: E402  (after the sys.path line)
from beam_pipeline.cli.demo import write_sample_clip  # noqa: E402

VARIANTS = {"isolated": [], "in-process": ["--face_stage_in_process"]}


def run_wall_s(flags: List[str]) -> float:
    """Wall time of one pipeline run in a fresh process, in seconds."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "beam_pipeline.run", *flags], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the clip (30 fps)")
    parser.add_argument("--pairs", type=int, default=5, help="paired runs (one of each variant per pair)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mimamo-bench-isolation-") as tmp:
        work = pathlib.Path(tmp)
        checkpoint, backbone, described = get_weights(work)
        clip = write_sample_clip(work / "clip.mp4", seconds=args.seconds)
        print(f"weights: {described}; CPUs: {len(os.sched_getaffinity(0))}; clip: 640x360, 30 fps, "
              f"{args.seconds:g} s, one face")
        run_wall_s(pipeline_flags(clip, work / "warm-up", checkpoint, backbone))  # OpenVINO conversion cache
        walls = {name: [] for name in VARIANTS}
        for pair in range(args.pairs):
            order = list(VARIANTS) if pair % 2 == 0 else list(VARIANTS)[::-1]
            for name in order:
                flags = pipeline_flags(clip, work / f"{name}-{pair}", checkpoint, backbone) + VARIANTS[name]
                walls[name].append(run_wall_s(flags))
            print(f"pair {pair}: isolated {walls['isolated'][-1]:.1f} s, in-process {walls['in-process'][-1]:.1f} s, "
                  f"ratio {walls['isolated'][-1] / walls['in-process'][-1]:.3f}")
        ratios = [iso / inproc for iso, inproc in zip(walls["isolated"], walls["in-process"])]
        print(f"median wall: isolated {statistics.median(walls['isolated']):.1f} s, in-process "
              f"{statistics.median(walls['in-process']):.1f} s")
        print(f"median ratio isolated / in-process: {statistics.median(ratios):.3f} (target <= 1.05)")


if __name__ == "__main__":
    main()
