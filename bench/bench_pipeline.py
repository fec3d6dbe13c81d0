"""End-to-end throughput and memory of the Beam pipeline (DirectRunner), from the repository root:

    .venv/bin/python bench/bench_pipeline.py [--seconds 10] [--workers 2 [--sharing] [--one-video-minutes 2]]
        [--memory-minutes 1 10] [--memory-fps 30]

1. Throughput: one run on a 640x360 one-face clip. End-to-end frames/s is frames / wall time of the run (decode,
   faces, backbone, phase, two-stream net, Parquet). Backbone-only frames/s is frames / the summed time of the
   backbone's forward passes in that same run (the ``backbone_latency_ms`` distribution), i.e. what the backbone
   alone would sustain on those frames. Then, in a fresh process (the allocator setting is process-wide), the
   same clip's aligned faces go through plain eager torch (fp32, channels_last, glibc's default allocator, all
   CPUs): its backbone-only frames/s is the acceptance reference. Target: end to end >= 1.2x plain eager torch.
   ``--repeats`` alternates the two measurements that many times.
2. Workers (``--workers N``, N > 1): N copies of the clip through one worker process, then through N worker
   processes (``--n_workers N``, DirectRunner multi_processing), alternated ``--repeats`` times. Target: the N
   processes' frames/s >= 0.95x the one process's (each process gets its share of the cores).
   With ``--one-video-minutes M``, also one M-minute clip three ways: one worker process without work units
   (``--work_unit_s 0``, the plain one-pass run), N processes without work units (the clip is one element: one
   process does all of it on its share of the cores) and N processes with the default work units
   (``beam_pipeline.units``: the model work of the clip spread over the N processes). Ratios: N with units / 1
   process (target >= 1.6; bounded above by the cores one process leaves idle) and N with units / N without.
   ``--threads-per-worker 1`` gives every process one thread, as Dataflow's one process per vCPU.
   ``--unit-lengths S ...`` adds one run of N processes per unit length (``--work_unit_s S``), against the default.
   ``--unit-overhead-minutes M`` (any ``--workers``): an M-minute clip through one process with one thread, in one
   pass and in units of each ``--unit-lengths``, alternated ``--repeats`` times: what the units path itself costs.
   With ``--sharing``, also N copies through N processes with a backbone in each process and with one backbone
   for the machine (``--backbone_sharing process`` / ``machine``), alternated: frames/s, their ratio, and the
   largest difference between the two runs' valence and arousal (the numbers must not depend on the sharing).
3. Memory: the pipeline on a 1-minute and a 10-minute clip, each in a fresh process; the peak resident set size
   (``ru_maxrss`` of the child) is printed. Target: within 10 % of each other. ``--memory-fps`` lowers the frame
   rate of these clips to bound the run time on small machines (the clips stay 1 and 10 minutes long).

Weights: the official files from the user cache when present, else seeded weights in the official formats (same
compute cost). The numbers depend on the machine; nothing here asserts them.
"""
import argparse
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import List, Tuple

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from apache_beam.metrics.metric import MetricsFilter  # noqa: E402  (after the sys.path line)

from beam_pipeline.cli.demo import write_sample_clip  # noqa: E402
from beam_pipeline.run import run  # noqa: E402
from mimamo_ops.errors import MimamoError  # noqa: E402
from mimamo_ops.weights.cache import resolve_weights  # noqa: E402


def get_weights(directory: pathlib.Path) -> Tuple[pathlib.Path, pathlib.Path, str]:
    """(checkpoint, backbone, description): cached official weights, else seeded ones written to ``directory``."""
    try:
        checkpoint, backbone = resolve_weights(None, None)
        return checkpoint, backbone, "official weights (user cache)"
    except MimamoError:
        import torch  # pylint: disable=import-outside-toplevel

        from mimamo_ops.model.checkpoints import (  # pylint: disable=import-outside-toplevel
            BACKBONE, MIMAMO, expected_shapes)
        from tests.parity_recipes import gen_state_dict  # pylint: disable=import-outside-toplevel

        def seeded(kind: str, seed: int):
            return gen_state_dict({k: torch.empty(s) for k, s in expected_shapes(kind).items()}, seed)

        checkpoint, backbone = directory / "model_weights.pth.tar", directory / "resnet50_ferplus_dag.pth"
        torch.save({"state_dict": seeded(MIMAMO, 3003), "epoch": 1}, checkpoint)
        torch.save(seeded(BACKBONE, 4004), backbone)
        return checkpoint, backbone, "seeded weights in the official formats (no cached official weights)"


def pipeline_flags(clip: pathlib.Path, output: pathlib.Path, checkpoint: pathlib.Path,
                   backbone: pathlib.Path) -> List[str]:
    return ["--input", str(clip), "--output", str(output), "--checkpoint", str(checkpoint), "--backbone",
            str(backbone), "--smoothing_size", "0.5"]


_PLAIN_TORCH_SCRIPT = """
import sys, time
import numpy as np
import torch
from mimamo_ops.faces.records import FaceConfig
from mimamo_ops.faces.stages import make_face_extractor
from mimamo_ops.model.backbone_runner import BackboneRunner
faces = [face.aligned for frame in make_face_extractor(FaceConfig()).extract(sys.argv[1]) for face in frame.faces]
runner = BackboneRunner.from_file(sys.argv[2], runtime="torch", channels_last=True, tune_memory=False)
runner.features(faces[:16])  # warm-up
started = time.perf_counter()
runner.features(np.stack(faces))
print(len(faces), time.perf_counter() - started, torch.get_num_threads())
"""


def plain_torch_backbone_rate(clip: pathlib.Path, backbone: pathlib.Path) -> float:
    """Backbone-only frames/s of plain eager torch on the clip's aligned faces, in a fresh process."""
    done = subprocess.run([sys.executable, "-c", _PLAIN_TORCH_SCRIPT, str(clip), str(backbone)], cwd=REPO,
                          capture_output=True, text=True, check=True)
    faces, seconds, threads = done.stdout.split()[-3:]
    rate = int(faces) / float(seconds)
    print(f"plain eager torch (fp32, channels_last, default allocator, {threads} threads), backbone only: "
          f"{int(faces)} faces in {float(seconds):.1f} s -> {rate:.2f} frames/s")
    return rate


def run_frames_per_s(flags: List[str]) -> Tuple[float, dict, dict, float]:
    """Runs the pipeline once: (frames/s end to end, counters, distributions, wall seconds)."""
    started = time.perf_counter()
    result = run(flags)
    wall_s = time.perf_counter() - started
    metrics = result.metrics().query(MetricsFilter().with_namespace("mimamo"))
    counters = {c.key.metric.name: c.committed for c in metrics["counters"]}
    distributions = {d.key.metric.name: d.committed for d in metrics["distributions"]}
    return counters.get("frames_decoded", 0) / wall_s, counters, distributions, wall_s


def copies_of(clip: pathlib.Path, work: pathlib.Path, copies: int) -> pathlib.Path:
    """A folder of ``copies`` hard links to the clip (the clip itself for 1)."""
    if copies <= 1:
        return clip
    folder = work / f"copies-of-{clip.stem}"
    folder.mkdir(exist_ok=True)
    for i in range(copies):
        copy = folder / f"copy{i}.mp4"
        if not copy.exists():
            os.link(clip, copy)
    return folder


def measure_workers(clip: pathlib.Path, work: pathlib.Path, checkpoint: pathlib.Path, backbone: pathlib.Path,
                    workers: int, repeats: int, copies: int, target: float) -> None:
    """``copies`` copies of the clip (1: the clip itself) through 1 worker process and through ``workers``,
    alternated; prints frames/s and the ratio."""
    inputs = copies_of(clip, work, copies)
    rates = {1: [], workers: []}
    for attempt in range(repeats):
        for processes in (1, workers):
            flags = pipeline_flags(inputs, work / f"{clip.stem}-workers{processes}-{attempt}", checkpoint, backbone)
            flags += ["--n_workers", str(processes)]
            rate, counters, _, wall_s = run_frames_per_s(flags)
            rates[processes].append(rate)
            print(f"{copies} x {clip.name}, {processes} worker process(es): {counters.get('frames_decoded', 0)} "
                  f"frames in {wall_s:.1f} s -> {rate:.2f} frames/s")
    ratios = [n / one for n, one in zip(rates[workers], rates[1])]
    print(f"{workers} processes / 1 process, per attempt: {', '.join(f'{r:.2f}' for r in ratios)} "
          f"(target >= {target:g})")


def measure_one_video(clip: pathlib.Path, work: pathlib.Path, checkpoint: pathlib.Path, backbone: pathlib.Path,
                      workers: int, repeats: int, threads_per_worker: int, unit_lengths_s: List[float]) -> None:
    """One long clip through 1 process without work units, N without and N with; prints frames/s and ratios.
    ``threads_per_worker`` (0: automatic) is given to every run; ``unit_lengths_s`` adds a run of N processes
    with units of each length."""
    runs = {"1 process, no units": (1, ["--work_unit_s", "0"]),
            f"{workers} processes, no units": (workers, ["--work_unit_s", "0"]),
            f"{workers} processes, work units": (workers, [])}
    for unit_s in unit_lengths_s:
        runs[f"{workers} processes, units of {unit_s:g} s"] = (workers, ["--work_unit_s", str(unit_s)])
    rates = {label: [] for label in runs}
    for attempt in range(repeats):
        for label, (processes, extra) in runs.items():
            output = work / f"{clip.stem}-{label.replace(' ', '_').replace(',', '')}-{attempt}"
            flags = (pipeline_flags(clip, output, checkpoint, backbone) + ["--n_workers", str(processes)] + extra
                     + ["--threads_per_worker", str(threads_per_worker)])
            rate, counters, _, wall_s = run_frames_per_s(flags)
            rates[label].append(rate)
            print(f"{clip.name}, {label}: {counters.get('frames_decoded', 0)} frames in {wall_s:.1f} s -> "
                  f"{rate:.2f} frames/s ({counters.get('work_units', 0)} work units)")
    one, without, with_units = list(rates.values())[:3]
    for label in list(runs)[3:]:
        print(f"{label} / default units, per attempt: "
              f"{', '.join(f'{n / d:.2f}' for n, d in zip(rates[label], with_units))}")
    print(f"{workers} processes with units / 1 process, per attempt: "
          f"{', '.join(f'{n / o:.2f}' for n, o in zip(with_units, one))} (target >= 1.6)")
    print(f"{workers} processes with units / without, per attempt: "
          f"{', '.join(f'{n / o:.2f}' for n, o in zip(with_units, without))}")


def _frames(output: pathlib.Path):
    """The run's frame rows in a stable order."""
    import pyarrow.parquet as pq  # pylint: disable=import-outside-toplevel
    return pq.read_table(output / "frames").sort_by([("video_uri", "ascending"), ("face_id", "ascending"),
                                                    ("frame_index", "ascending")])


def measure_backbone_sharing(clip: pathlib.Path, work: pathlib.Path, checkpoint: pathlib.Path,
                             backbone: pathlib.Path, workers: int, repeats: int, threads_per_worker: int) -> None:
    """``workers`` copies of the clip through ``workers`` processes with a backbone per process and with one per
    machine (``--backbone_sharing``), alternated; prints frames/s, the ratio, and the largest difference between
    the two runs' valence and arousal."""
    inputs = copies_of(clip, work, workers)
    rates = {"process": [], "machine": []}
    for attempt in range(repeats):
        outputs = {}
        for sharing in rates:
            outputs[sharing] = work / f"{clip.stem}-sharing-{sharing}-{attempt}"
            flags = (pipeline_flags(inputs, outputs[sharing], checkpoint, backbone)
                     + ["--n_workers", str(workers), "--backbone_sharing", sharing,
                        "--threads_per_worker", str(threads_per_worker)])
            rate, counters, _, wall_s = run_frames_per_s(flags)
            rates[sharing].append(rate)
            print(f"{workers} x {clip.name}, {workers} processes, backbone per {sharing}: "
                  f"{counters.get('frames_decoded', 0)} frames in {wall_s:.1f} s -> {rate:.2f} frames/s")
        tables = [_frames(output) for output in outputs.values()]
        difference = max(abs(a - b) for name in ("valence", "arousal")
                         for a, b in zip(tables[0].column(name).to_pylist(), tables[1].column(name).to_pylist()))
        print(f"  rows: {tables[0].num_rows} and {tables[1].num_rows}; max |difference| of valence and arousal: "
              f"{difference:.2e}")
    print(f"one backbone per machine / per process, per attempt: "
          f"{', '.join(f'{m / p:.2f}' for m, p in zip(rates['machine'], rates['process']))}")


def measure_unit_overhead(clip: pathlib.Path, work: pathlib.Path, checkpoint: pathlib.Path, backbone: pathlib.Path,
                          unit_lengths_s: List[float], repeats: int) -> None:
    """The clip through one process with one thread, in one pass and in units of each length, alternated: what
    the units path itself costs where nothing runs beside the video."""
    for attempt in range(repeats):
        walls = {}
        for unit_s in [0.0] + list(unit_lengths_s):
            flags = (pipeline_flags(clip, work / f"{clip.stem}-overhead-{unit_s:g}-{attempt}", checkpoint, backbone)
                     + ["--threads_per_worker", "1", "--work_unit_s", str(unit_s)])
            _, counters, _, walls[unit_s] = run_frames_per_s(flags)
            against = f", {walls[unit_s] / walls[0.0] - 1:+.1%} against one pass" if unit_s else ""
            print(f"{clip.name}, 1 process, 1 thread, --work_unit_s {unit_s:g}: {walls[unit_s]:.1f} s "
                  f"({counters.get('work_units', 0)} units){against}")


def measure_throughput(clip: pathlib.Path, work: pathlib.Path, checkpoint: pathlib.Path,
                       backbone: pathlib.Path, attempt: int = 0) -> float:
    """One pipeline run on ``clip``; prints its figures and returns end-to-end frames/s."""
    end_to_end, counters, distributions, wall_s = run_frames_per_s(
        pipeline_flags(clip, work / f"throughput{attempt}", checkpoint, backbone))
    frames = counters["frames_decoded"]
    backbone_s = distributions["backbone_latency_ms"].sum / 1000.0
    load_s = distributions["load_model_latency_ms"].sum / 1000.0
    backbone_only = counters["frames_with_face"] / backbone_s
    print(f"frames decoded: {frames}, frames with a face: {counters['frames_with_face']}")
    print(f"end to end: {wall_s:.1f} s wall (model load {load_s:.1f} s) -> {end_to_end:.2f} frames/s")
    print(f"backbone only (same frames, same run): {backbone_s:.1f} s -> {backbone_only:.2f} frames/s")
    for name in ("face_stage_latency_ms", "predict_latency_ms", "video_latency_ms"):
        if name in distributions:
            print(f"  {name}: sum {distributions[name].sum / 1000.0:.1f} s over {distributions[name].count} calls")
    print(f"ratio end to end / backbone only (same run, the pipeline's own backbone): "
          f"{end_to_end / backbone_only:.2f}")
    return end_to_end


def peak_rss_mib(clip: pathlib.Path, output: pathlib.Path, checkpoint: pathlib.Path, backbone: pathlib.Path) -> float:
    """Runs the pipeline in a fresh process; returns its peak resident set size in MiB."""
    command = [sys.executable, "-m", "beam_pipeline.run"] + pipeline_flags(clip, output, checkpoint, backbone)
    process = subprocess.Popen(command, cwd=REPO)  # pylint: disable=consider-using-with
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"{' '.join(command)} failed")
    return usage.ru_maxrss / 1024.0  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the throughput clip (30 fps)")
    parser.add_argument("--repeats", type=int, default=1, help="alternations of each comparison")
    parser.add_argument("--workers", type=int, default=1, help="N > 1: also compare N processes with one")
    parser.add_argument("--one-video-minutes", type=float, default=None,
                        help="with --workers N: also one clip of this many minutes through 1 and N processes")
    parser.add_argument("--unit-lengths", type=float, nargs="*", default=[],
                        help="with --one-video-minutes: also N processes with work units of each of these lengths "
                        "(seconds), against the default")
    parser.add_argument("--unit-overhead-minutes", type=float, default=None,
                        help="also a clip of this many minutes through one process with one thread, in one pass and "
                        "in units of each --unit-lengths")
    parser.add_argument("--threads-per-worker", type=int, default=0,
                        help="threads of each worker process in the one-video part (0: its share of the cores; 1: "
                        "one process per core, as Dataflow runs them)")
    parser.add_argument("--sharing", action="store_true",
                        help="with --workers N: also N copies through N processes with a backbone per process and "
                        "one per machine (--backbone_sharing)")
    parser.add_argument("--skip-throughput", action="store_true", help="only the workers and memory parts")
    parser.add_argument("--memory-minutes", type=float, nargs="*", default=[1.0, 10.0],
                        help="lengths of the memory clips in minutes; none skips the memory part")
    parser.add_argument("--memory-fps", type=int, default=30, help="frame rate of the memory clips")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mimamo-bench-") as tmp:
        work = pathlib.Path(tmp)
        checkpoint, backbone, described = get_weights(work)
        print(f"weights: {described}; CPU threads: {os.cpu_count()}")
        clip = write_sample_clip(work / "throughput.mp4", seconds=args.seconds)
        print(f"throughput clip: 640x360, 30 fps, {args.seconds:g} s")
        for attempt in range(0 if args.skip_throughput else args.repeats):
            end_to_end = measure_throughput(clip, work, checkpoint, backbone, attempt)
            plain = plain_torch_backbone_rate(clip, backbone)
            print(f"end to end / plain eager torch backbone only: {end_to_end / plain:.2f} (target >= 1.2)")
        if args.workers > 1:
            measure_workers(clip, work, checkpoint, backbone, args.workers, args.repeats, copies=args.workers,
                            target=0.95)
            if args.sharing:
                measure_backbone_sharing(clip, work, checkpoint, backbone, args.workers, args.repeats,
                                         args.threads_per_worker)
            if args.one_video_minutes:
                one_video = write_sample_clip(work / f"one_video_{args.one_video_minutes:g}min.mp4",
                                              seconds=60 * args.one_video_minutes)
                measure_one_video(one_video, work, checkpoint, backbone, args.workers, args.repeats,
                                  args.threads_per_worker, args.unit_lengths)
        if args.unit_overhead_minutes:
            overhead_clip = write_sample_clip(work / f"overhead_{args.unit_overhead_minutes:g}min.mp4",
                                              seconds=60 * args.unit_overhead_minutes)
            measure_unit_overhead(overhead_clip, work, checkpoint, backbone, args.unit_lengths, args.repeats)
        peaks = []
        for minutes in args.memory_minutes:
            started = time.perf_counter()
            long_clip = write_sample_clip(work / f"memory_{minutes:g}min.mp4", seconds=60 * minutes,
                                          fps=args.memory_fps)
            made_s = time.perf_counter() - started
            started = time.perf_counter()
            peak = peak_rss_mib(long_clip, work / f"memory_{minutes:g}min", checkpoint, backbone)
            peaks.append(peak)
            print(f"{minutes:g}-minute clip ({args.memory_fps} fps, made in {made_s:.0f} s): peak RSS {peak:.0f} MiB "
                  f"(run {time.perf_counter() - started:.0f} s)")
        if len(peaks) >= 2:
            print(f"peak RSS ratio longest/shortest: {peaks[-1] / peaks[0]:.3f} (target <= 1.10)")


if __name__ == "__main__":
    main()
