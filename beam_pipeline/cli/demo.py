"""``make demo``: weights, a generated sample clip, ``mimamo run``, and the first rows via DuckDB.

Steps:
1. use the official weights from the user cache, downloading them if missing
   (``mimamo_ops.weights.cache.fetch_weights``; ``--offline`` skips the download). When they cannot be had (offline,
   dead links), say so in a few lines and carry on with deterministic stand-in weights in the official file
   formats (``mimamo_ops.weights.standins``, written to ``demo-output/stand-in-weights``): the whole pipeline
   runs, and the output and the Parquet metadata (``mimamo.weights``) say that the numbers are not
   MIMAMO-Net's and how to get the real weights;
2. write a 5-second 640x360 sample clip of a real face photo (scikit-image's astronaut, public domain) moving
   across a still background, into ``demo-output/`` (about 0.1 MB);
3. run ``mimamo run`` on it (DirectRunner) into ``demo-output/results``;
4. print the first rows of both tables with DuckDB.
"""
import argparse
import logging
import shutil
import sys
from fractions import Fraction
from pathlib import Path
from typing import List, Optional, Tuple

import av
import cv2
import duckdb
import numpy as np

from beam_pipeline.cli.main import main as run_mimamo
from beam_pipeline.library_warnings import log_library_warnings
from mimamo_ops.errors import WeightsFetchError
from mimamo_ops.weights.cache import fetch_weights
from mimamo_ops.weights.standins import STAND_IN_NOTE, write_stand_in_weights

__all__ = ["write_sample_clip", "choose_weights", "print_sample_rows", "main"]

LOGGER = logging.getLogger(__name__)
SAMPLE_SIZE_PX = (640, 360)  # (width, height)
SAMPLE_FPS = 30
SAMPLE_SECONDS = 5
FETCH_TIMEOUT_S = 20.0  # per request; a dead link should not keep a newcomer waiting long
REAL_WEIGHTS_HINT = ("To get the real weights: `mimamo weights fetch` when online, or download both files by hand\n"
                     "and run `mimamo weights import FILE` for each; then `make demo` again.")


def _astronaut_face() -> np.ndarray:
    """uint8 (256, 256, 3) RGB: the head and shoulders of scikit-image's astronaut photo."""
    import skimage.data  # pylint: disable=import-outside-toplevel  # only the demo needs scikit-image

    return np.ascontiguousarray(skimage.data.astronaut()[0:256, 104:360])


def write_sample_clip(path: Path, seconds: float = SAMPLE_SECONDS, fps: int = SAMPLE_FPS) -> Path:
    """Writes a 640x360 H.264 clip of the astronaut's face drifting and nodding on a grey gradient.

    Args:
        path: the .mp4 to write.
        seconds: clip length in seconds.
        fps: frame rate in frames per second.

    Returns:
        ``path``.
    """
    width, height = SAMPLE_SIZE_PX
    face = _astronaut_face()
    background = np.tile(np.linspace(70, 170, width, dtype=np.float32)[None, :, None], (height, 1, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        num_frames = int(round(seconds * fps))
        for index in range(num_frames):
            phase = 2 * np.pi * index / min(num_frames, 10 * fps)  # one sweep every 10 s
            centre = (width / 2 + 0.2 * width * np.sin(phase), height / 2)
            matrix = cv2.getRotationMatrix2D((128.0, 128.0), 8.0 * np.sin(3 * phase), 180.0 / 256.0)
            matrix[:, 2] += np.array(centre) - 128.0
            warped = cv2.warpAffine(face, matrix, (width, height)).astype(np.float32)
            mask = cv2.warpAffine(np.ones((256, 256), np.float32), matrix, (width, height))[..., None]
            rgb = np.clip(mask * warped + (1 - mask) * background + 0.5, 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def choose_weights(workdir: Path, offline: bool) -> Tuple[List[str], bool]:
    """The weight flags for ``mimamo run`` and whether they are stand-ins (official weights when available)."""
    if not offline:
        try:
            fetch_weights(timeout_s=FETCH_TIMEOUT_S)
            return [], False  # mimamo run finds them in the user cache
        except WeightsFetchError as error:
            print(f"demo: the official MIMAMO-Net weights are not available:\n{error}", file=sys.stderr)
    checkpoint, backbone = write_stand_in_weights(workdir / "stand-in-weights")
    print("demo: running with deterministic STAND-IN weights instead; their numbers are not MIMAMO-Net's.\n"
          + REAL_WEIGHTS_HINT, file=sys.stderr)
    return ["--checkpoint", str(checkpoint), "--backbone", str(backbone)], True


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the demo; returns ``mimamo run``'s exit status (0 when the sample clip gave rows)."""
    parser = argparse.ArgumentParser(prog="python -m beam_pipeline.cli.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="demo-output", help="where the sample clip and results go")
    parser.add_argument("--offline", action="store_true",
                        help="never download: official weights from the cache, else stand-in weights")
    args = parser.parse_args(argv)
    log_library_warnings()  # before torch, Beam and their dependencies load
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    workdir = Path(args.workdir)
    weight_flags, stand_in = choose_weights(workdir, args.offline)
    clip = workdir / "sample.mp4"
    if not clip.exists():
        write_sample_clip(clip)
    output = workdir / "results"
    shutil.rmtree(output, ignore_errors=True)  # the pipeline refuses to mix its shards with an earlier run's
    LOGGER.info("sample clip %s (%.2f MB)", clip, clip.stat().st_size / 1e6)
    status = run_mimamo(["run", str(clip), "--output", str(output), "--smoothing_size", "0.5", *weight_flags])
    if status:
        return status
    print_sample_rows(output, stand_in)
    return 0


def print_sample_rows(output: Path, stand_in: bool) -> None:
    """Prints the sample's ``videos`` row and first ``frames`` rows with DuckDB, and the stand-in notice if any."""
    con = duckdb.connect()
    print(con.sql(f"SELECT status, frame_count, fps, faces_found, frames_with_face, mean_valence, mean_arousal "
                  f"FROM read_parquet('{output}/videos/*.parquet')"))
    print(con.sql(f"SELECT face_id, frame_index, timestamp_s, valence, arousal, valence_smoothed, arousal_smoothed "
                  f"FROM read_parquet('{output}/frames/*.parquet') ORDER BY face_id, frame_index LIMIT 10"))
    if stand_in:
        print(f"NOTE: these rows come from {STAND_IN_NOTE}.\n{REAL_WEIGHTS_HINT}")


if __name__ == "__main__":
    sys.exit(main())
