"""Times phase-difference extraction for one 64-frame snippet (spec 10.1 item 1).

Prints milliseconds per snippet for the cached path (``frame_coefficients`` on the 76 distinct frames
the snippet's windows touch, then ``window_differences`` on its 64 windows) and for the original's
per-window path (``snippet_differences``: the pyramid of all 64 x 13 window images), with
``torch.set_num_threads(2)`` by default, as in the parity README's baseline (1.87 s for the original
code). Best and median of the runs are printed: on a shared machine the best is the fairer figure.

Usage: ``python bench/bench_phase.py [--repeats N] [--device cpu|cuda] [--threads N]``.
"""
import argparse
import os
import pathlib
import sys

import numpy as np
import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from bench.timing import time_runs  # noqa: E402
from mimamo_ops.model.phase import NUM_PHASE, PHASE_SIZE, WINDOW, PhaseDifferenceExtractor  # noqa: E402

SNIPPET_LENGTH = 64
ORIGINAL_MS = 1870.0  # parity README section 5: phase_diff_output, one snippet, 2 threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per stage (median reported)")
    parser.add_argument("--device", default="cpu", help="torch device (cpu or cuda)")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (the baseline used 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    rng = np.random.default_rng(0)
    num_frames = SNIPPET_LENGTH + NUM_PHASE
    frames = torch.from_numpy(rng.uniform(0, 1, (num_frames, PHASE_SIZE, PHASE_SIZE)).astype(np.float32)).to(device)
    windows = torch.arange(SNIPPET_LENGTH)[:, None] + torch.arange(WINDOW)[None, :]
    snippet = frames[windows].unsqueeze(0)  # (1, 64, 13, 48, 48)
    extractor = PhaseDifferenceExtractor().to(device)

    sync = torch.cuda.synchronize if device.type == "cuda" else None

    def time_ms(fn):
        timing = time_runs(fn, args.repeats, sync)
        return 1e3 * timing.best_s, 1e3 * timing.median_s

    with torch.inference_mode():
        coeffs = extractor.frame_coefficients(frames)
        frame_ms = time_ms(lambda: extractor.frame_coefficients(frames))
        window_ms = time_ms(lambda: extractor.window_differences(coeffs, windows))
        per_window_ms = time_ms(lambda: extractor.snippet_differences(snippet))
    cached_ms = tuple(f + w for f, w in zip(frame_ms, window_ms))
    print(f"device {device}, threads {torch.get_num_threads()}, snippet of {SNIPPET_LENGTH} frames, "
          f"load average {os.getloadavg()[0]:.1f}, {args.repeats} runs")
    print(f"{'stage':42s} {'best ms':>9s} {'median ms':>10s}")
    rows = [
        (f"frame_coefficients ({num_frames} frames)", frame_ms),
        (f"window_differences ({SNIPPET_LENGTH} windows)", window_ms),
        ("cached path total, per snippet", cached_ms),
        ("per-window path (snippet_differences)", per_window_ms),
    ]
    for name, (best, median) in rows:
        print(f"{name:42s} {best:9.1f} {median:10.1f}")
    print(f"speed-up of caching over per-window (best): {per_window_ms[0] / cached_ms[0]:.2f} x")
    print(f"speed-up over the original's 1870 ms (best): {ORIGINAL_MS / cached_ms[0]:.1f} x")


if __name__ == "__main__":
    main()
