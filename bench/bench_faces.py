"""Times the built-in face stage: milliseconds per face per frame on 640x360 H.264 clips.

Run: ``.venv/bin/python bench/bench_faces.py [--frames 300] [--repeats 3]``. The clips are the test clips
(``tests/clips.py``) written to a temporary directory. Decoding is timed separately and subtracted, so the
numbers are the face stage alone (tracking, landmarks, quality check, alignment). Prints the median (and best)
over ``--repeats`` runs after one warm-up of:

* single-face mode on the moving-face clip (one face moving, scaling and rolling);
* multi-face mode on the two-faces clip;
* for comparison, the naive pipeline: the full-frame detector on every frame, landmarks in its box, alignment;
* the largest frame-to-frame step of the aligned eye centres on the static-face clip, tracked and naive.

The issue's target is under 8 ms per face per frame.
"""
import argparse
import pathlib
import sys
import tempfile

import cv2
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from bench.timing import time_runs  # noqa: E402
from mimamo_ops.faces import DlibFaceExtractor, FaceConfig  # noqa: E402
from mimamo_ops.faces.alignment import build_warp_matrix, transform_points, warp_face  # noqa: E402
from mimamo_ops.video import iter_frames  # noqa: E402
from tests import clips  # noqa: E402

TARGET_MS_PER_FACE = 8.0


def naive_landmarks(extractor: DlibFaceExtractor, path: pathlib.Path) -> list:
    """Full-frame detection on every frame, landmarks in the largest box, and the aligned crop."""
    model = extractor._model  # the same loaded models; the bench compares pipelines, not models
    out = []
    for frame in iter_frames(str(path)):
        gray = cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2GRAY)
        boxes, _ = model.detect(gray, 0, 0.0)
        if len(boxes) == 0:
            out.append(None)
            continue
        largest = boxes[np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))]
        landmarks = model.predict(gray, largest)
        warp_face(frame.rgb, build_warp_matrix(landmarks, extractor.template, 112), 112)
        out.append(landmarks)
    return out


def max_eye_step_px(landmark_sequence, template) -> float:
    """Largest frame-to-frame move of either aligned eye centre, pixels of the 112-px crop."""
    eyes = []
    for landmarks in landmark_sequence:
        points = transform_points(build_warp_matrix(landmarks, template, 112), landmarks)
        eyes.append([points[36:42].mean(axis=0), points[42:48].mean(axis=0)])
    return float(np.linalg.norm(np.diff(np.array(eyes), axis=0), axis=2).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="clip length in frames")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median reported)")
    args = parser.parse_args()
    n = args.frames

    single = DlibFaceExtractor(FaceConfig())
    multi = DlibFaceExtractor(FaceConfig(multi_face=True))
    with tempfile.TemporaryDirectory() as tmp:
        moving = clips.moving_face_clip(pathlib.Path(tmp) / "moving.mp4", n_frames=n, size=(640, 360))
        two = clips.two_faces_clip(pathlib.Path(tmp) / "two.mp4", n_frames=n, size=(640, 360))
        static = clips.static_face_clip(pathlib.Path(tmp) / "static.mp4", n_frames=min(n, 60), size=(640, 360))

        decode_s = time_runs(lambda: sum(1 for _ in iter_frames(str(moving))), args.repeats).median_s
        print(f"decode alone: {1000 * decode_s / n:.2f} ms/frame (subtracted below)")
        rows = [
            ("single-face, moving clip", single, moving),
            ("multi-face, two-faces clip", multi, two),
        ]
        for label, extractor, path in rows:
            timing = time_runs(lambda e=extractor, p=path: list(e.extract(str(p))), args.repeats)
            median_s, best_s, frames = timing.median_s, timing.best_s, timing.result
            faces = sum(len(f.faces) for f in frames)
            per_face = lambda s: 1000 * (s - decode_s) / max(faces, 1)  # noqa: E731
            print(f"{label}: {per_face(median_s):.2f} ms per face per frame (best {per_face(best_s):.2f}); "
                  f"faces in {sum(bool(f.faces) for f in frames)}/{n} frames, {faces} faces "
                  f"[target < {TARGET_MS_PER_FACE} ms]")
        timing = time_runs(lambda: naive_landmarks(single, moving), args.repeats)
        median_s, best_s, naive = timing.median_s, timing.best_s, timing.result
        found = sum(landmarks is not None for landmarks in naive)
        print(f"naive (detector every frame), moving clip: {1000 * (median_s - decode_s) / max(found, 1):.2f} ms "
              f"per face per frame (best {1000 * (best_s - decode_s) / max(found, 1):.2f}); "
              f"faces in {found}/{n} frames")

        tracked = [f.faces[0].landmarks for f in single.extract(str(static)) if f.faces]
        naive_static = [lm for lm in naive_landmarks(single, static) if lm is not None]
        print(f"static clip, max aligned eye step: tracked {max_eye_step_px(tracked, single.template):.3f} px, "
              f"naive {max_eye_step_px(naive_static, single.template):.3f} px [target < 1 px]")


if __name__ == "__main__":
    main()
