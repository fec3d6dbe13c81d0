"""ResNet-50 FER+ throughput (images/s) per configuration, batch 32, 2 threads, seeded weights (seed 4004).

Minor page faults per timed batch are printed too: they show the allocator effect even when the CPU is shared.
Each configuration runs in its own fresh process, because the glibc allocator setting (``tune_allocator``) is
process-wide and cannot be undone. The bf16 row also reports how far its features are from the fp32
channels_last features on the same images. Usage, from the repository root:

    .venv/bin/python bench/bench_backbone.py [--batches 3] [--threads 2]
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

BATCH_SIZE = 32
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


def run_config(name: str, batches: int, threads: int, features_out: str) -> dict:
    """Times one configuration in this process; saves its features to ``features_out`` (.npy)."""
    import torch

    from mimamo_ops.backbone import BackboneRunner, ResNet50FerPlus, preprocess_faces
    from tests.parity_recipes import gen_state_dict

    torch.set_num_threads(threads)
    channels_last, tune, precision = CONFIGS[name]
    with torch.device("meta"):
        template = ResNet50FerPlus().state_dict()
    runner = BackboneRunner(
        gen_state_dict(template, 4004),
        batch_size=BATCH_SIZE,
        precision=precision,
        channels_last=channels_last,
        tune_memory=tune,
    )
    x = preprocess_faces(make_faces(BATCH_SIZE))
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
        "images_per_s": [BATCH_SIZE / s for s in seconds],
        "median_images_per_s": BATCH_SIZE / np.median(seconds),
        "page_faults_per_batch": faults / batches,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=3, help="timed batches per configuration (after 1 warm-up)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--config", choices=sorted(CONFIGS), help=argparse.SUPPRESS)  # child-process mode
    parser.add_argument("--features-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.config:
        print(json.dumps(run_config(args.config, args.batches, args.threads, args.features_out)))
        return

    import torch

    print(f"torch {torch.__version__}, batch {BATCH_SIZE}, {args.threads} threads, {args.batches} timed batches")
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for index, name in enumerate(CONFIGS):
            features_out = str(pathlib.Path(scratch) / f"{index}.npy")
            command = [sys.executable, __file__, "--config", name, "--batches", str(args.batches)]
            command += ["--threads", str(args.threads), "--features-out", features_out]
            completed = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO)
            results[name] = json.loads(completed.stdout.strip().splitlines()[-1])
            results[name]["features"] = np.load(features_out)
            runs = ", ".join(f"{v:.1f}" for v in results[name]["images_per_s"])
            faults = results[name]["page_faults_per_batch"]
            print(
                f"{name:48s} {results[name]['median_images_per_s']:6.1f} img/s  (runs {runs})  "
                f"{faults:9.0f} minor page faults/batch",
                flush=True,
            )

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
