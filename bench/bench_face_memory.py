"""Memory of the face stage against frame size: what the defaults of ``--max_frame_pixels`` and
``--video_memory_budget_mb`` rest on. From the repository root:

    .venv/bin/python bench/bench_face_memory.py [--sizes 1280x720 1920x1080 3840x2160 7680x4320] [--frames 3]

For each size, a clip of the moving face (``tests.clips.moving_face_frames``, H.264) goes through the default face
stage (``make_face_extractor(FaceConfig())``, MTCNN) in a fresh process. The process's resident set is read after the
models are loaded and a warm-up frame ran (``VmRSS``), the peak is then reset (``/proc/self/clear_refs``) and read
again after the clip (``VmHWM``). Printed: the growth of the peak over the loaded process in MiB, and that growth per
pixel of one frame in bytes. Linux only (``/proc``). Nothing here asserts the numbers.
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile
from typing import Tuple

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests import clips  # noqa: E402  (after the sys.path line)

_MEASURE_SCRIPT = """
import json, sys
from mimamo_ops.faces.records import FaceConfig
from mimamo_ops.faces.stages import make_face_extractor
from tests import clips

def status_kib(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])

extractor = make_face_extractor(FaceConfig())
warm = sys.argv[2]
frames = sum(1 for _ in extractor.extract(warm))
loaded_kib = status_kib("VmRSS")
with open("/proc/self/clear_refs", "w") as handle:
    handle.write("5")  # resets VmHWM to the current VmRSS
frames = sum(1 for _ in extractor.extract(sys.argv[1]))
print(json.dumps({"frames": frames, "loaded_kib": loaded_kib, "peak_kib": status_kib("VmHWM")}))
"""


def parse_size(text: str) -> Tuple[int, int]:
    width, height = text.lower().split("x")
    return int(width), int(height)


def measure(clip: pathlib.Path, warm: pathlib.Path) -> dict:
    """Runs the face stage on ``clip`` in a fresh process; returns its frames and memory figures (KiB)."""
    done = subprocess.run([sys.executable, "-c", _MEASURE_SCRIPT, str(clip), str(warm)], cwd=REPO,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=parse_size,
                        default=[(1280, 720), (1920, 1080), (3840, 2160), (7680, 4320)], help="WIDTHxHEIGHT")
    parser.add_argument("--frames", type=int, default=3, help="frames per clip")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mimamo-face-memory-") as tmp:
        work = pathlib.Path(tmp)
        warm = clips.moving_face_clip(work / "warm.mp4", n_frames=2)
        for width, height in args.sizes:
            clip = clips.moving_face_clip(work / f"{width}x{height}.mp4", n_frames=args.frames,
                                          size=(width, height))
            figures = measure(clip, warm)
            growth_mib = (figures["peak_kib"] - figures["loaded_kib"]) / 1024.0
            per_px = growth_mib * 2 ** 20 / (width * height)
            print(f"{width}x{height} ({width * height / 1e6:.1f} Mpx, {figures['frames']} frames): loaded "
                  f"{figures['loaded_kib'] / 1024.0:.0f} MiB, peak growth {growth_mib:.0f} MiB = {per_px:.0f} bytes "
                  "per pixel")


if __name__ == "__main__":
    main()
