"""ResNet-50 FER+ throughput (images/s) per configuration, 2 threads, seeded weights (seed 4004).

1. Configurations at the CPU default batch size (``CPU_BATCH_SIZE``). Minor page faults per timed run are printed
   too: they show the allocator effect even when the CPU is shared. The bf16 row also reports how far its
   features are from the fp32 channels_last features on the same images.
2. The default configuration at several batch sizes, with the peak resident set size of each: what
   ``CPU_BATCH_SIZE`` is chosen from (the largest activation, and so the heap the tuned allocator keeps, grows
   with the batch).

Every timed run is the same 64 faces. Each measurement runs in its own fresh process, because the glibc
allocator setting (``tune_allocator``) is process-wide and cannot be undone. Usage, from the repository root:

    .venv/bin/python bench/bench_backbone.py [--batches 3] [--threads 2] [--batch-sizes 8 16 32 64]
"""
import argparse
import json
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

IMAGES_PER_RUN = 64
# name -> (channels_last, tune_allocator, precision)
CONFIGS = {
    "fp32 channels_first": (False, False, "fp32"),
    "fp32 channels_last": (True, False, "fp32"),
    "fp32 channels_first + tune_allocator": (False, True, "fp32"),
    "fp32 channels_last + tune_allocator (default)": (True, True, "fp32"),
    "bf16 channels_last + tune_allocator": (True, True, "bf16"),
}
REFERENCE = "fp32 channels_last + tune_allocator (default)"


def make_faces(count: int) -> np.ndarray:
    """uint8 (count, 112, 112, 3) smooth RGB textures (parity README 1.2), seed 4005."""
    from tests.parity_recipes import render, wave_params

    rng = np.random.default_rng(4005)
    return np.stack(
        [np.stack([render(wave_params(rng, 8), 112, 112) for _ in range(3)], axis=-1) for _ in range(count)]
    )


def run_config(name: str, batch_size: int, batches: int, threads: int, features_out: str) -> dict:
    """Times one configuration in this process; saves its features to ``features_out`` (.npy)."""
    import torch

    from mimamo_ops.model.backbone import ResNet50FerPlus, preprocess_faces
    from mimamo_ops.model.backbone_runner import BackboneRunner
    from tests.parity_recipes import gen_state_dict

    torch.set_num_threads(threads)
    channels_last, tune, precision = CONFIGS[name]
    with torch.device("meta"):
        template = ResNet50FerPlus().state_dict()
    runner = BackboneRunner(
        gen_state_dict(template, 4004),
        batch_size=batch_size,
        precision=precision,
        channels_last=channels_last,
        tune_memory=tune,
        runtime="torch",  # these are the torch runtime's settings; bench_runtimes.py compares runtimes
    )
    x = preprocess_faces(make_faces(IMAGES_PER_RUN))
    runner.features_from_input(x)  # warm-up
    seconds = []
    faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(batches):
        start = time.perf_counter()
        features = runner.features_from_input(x)
        seconds.append(time.perf_counter() - start)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before
    np.save(features_out, features)
    return {
        "images_per_s": [IMAGES_PER_RUN / s for s in seconds],
        "median_images_per_s": IMAGES_PER_RUN / np.median(seconds),
        "page_faults_per_run": faults / batches,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,  # Linux reports KiB
    }


def run_child(name: str, batch_size: int, args: argparse.Namespace, features_out: str) -> dict:
    """``run_config`` in a fresh process; its result with the features loaded."""
    command = [sys.executable, __file__, "--config", name, "--batch-size", str(batch_size)]
    command += ["--batches", str(args.batches), "--threads", str(args.threads), "--features-out", features_out]
    completed = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO)
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["features"] = np.load(features_out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=3,
                        help="timed runs of 64 faces per measurement (after 1 warm-up)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--batch-sizes", type=int, nargs="*", default=[8, 16, 32, 64],
                        help="batch sizes for the default configuration; none skips part 2")
    parser.add_argument("--config", choices=sorted(CONFIGS), help=argparse.SUPPRESS)  # child-process mode
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--features-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.config:
        print(json.dumps(run_config(args.config, args.batch_size, args.batches, args.threads, args.features_out)))
        return

    import torch

    from mimamo_ops.model.backbone_runner import CPU_BATCH_SIZE

    print(f"torch {torch.__version__}, batch {CPU_BATCH_SIZE}, {args.threads} threads, {args.batches} timed runs "
          f"of {IMAGES_PER_RUN} faces")
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for index, name in enumerate(CONFIGS):
            results[name] = run_child(name, CPU_BATCH_SIZE, args, str(pathlib.Path(scratch) / f"{index}.npy"))
            runs = ", ".join(f"{v:.1f}" for v in results[name]["images_per_s"])
            print(
                f"{name:48s} {results[name]['median_images_per_s']:6.1f} img/s  (runs {runs})  "
                f"{results[name]['page_faults_per_run']:9.0f} minor page faults/run",
                flush=True,
            )
        if args.batch_sizes:
            print(f"\n'{REFERENCE}' by batch size:")
        for batch_size in args.batch_sizes:
            result = run_child(REFERENCE, batch_size, args, str(pathlib.Path(scratch) / f"batch{batch_size}.npy"))
            runs = ", ".join(f"{v:.1f}" for v in result["images_per_s"])
            print(f"  batch {batch_size:3d}: {result['median_images_per_s']:6.1f} img/s  (runs {runs})  "
                  f"peak RSS {result['peak_rss_mib']:6.0f} MiB", flush=True)

    baseline = results["fp32 channels_first"]["median_images_per_s"]
    print("\nspeed-up over fp32 channels_first (glibc defaults):")
    for name, result in results.items():
        print(f"  {name:48s} x{result['median_images_per_s'] / baseline:.2f}")
    reference = results[REFERENCE]["features"]
    scale = float(np.abs(reference).max())
    print(f"\nfeature deviation from '{REFERENCE}' (max |feature| {scale:.1f}):")
    for name, result in results.items():
        deviation = float(np.abs(result["features"] - reference).max())
        print(f"  {name:48s} max abs {deviation:.3g}  relative to max {deviation / scale:.3g}")


if __name__ == "__main__":
    main()
