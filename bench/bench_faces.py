"""Times the built-in face stages side by side, MTCNN (default; its networks on OpenVINO and on eager torch) and
dlib HOG, in one run.

Run: ``.venv/bin/python bench/bench_faces.py [--frames 300] [--repeats 3]``. Clips are 640x360 H.264 written to a
temporary directory: the moving-face test clip (``tests/clips.py``, one face moving, scaling and rolling) and a
three-face clip (three real faces from ``tests/data/faces/bald_guys.jpg`` side by side, panning slowly).
Decoding is timed separately and subtracted, so the figures are the face stage alone (cut check, detection,
tracking, landmarks, quality check, descriptors, alignment). Prints, per backend, the median (and best) over
``--repeats`` runs after one warm-up of:

* milliseconds per frame, single-face mode on the one-face clip (the issue's target: 8 ms or less);
* milliseconds per frame, multi-face mode on the three-face clip;
* one full-frame detection on a 640x360 frame;
* recall at IoU 0.5 and false faces per image on the labelled photos (``tests/data/faces``).
"""
import argparse
import pathlib
import sys
import tempfile
import time

import cv2
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from bench.timing import time_runs  # noqa: E402
from mimamo_ops.decoding.video import iter_frames  # noqa: E402
from mimamo_ops.faces.dlib_stage import DlibFaceExtractor  # noqa: E402
from mimamo_ops.faces.evaluation import load_labelled_images, score_detections  # noqa: E402
from mimamo_ops.faces.mtcnn_stage import MtcnnFaceExtractor  # noqa: E402
from mimamo_ops.faces.records import FaceConfig  # noqa: E402
from tests import clips  # noqa: E402

TARGET_MS_PER_FRAME = 8.0
LABELS = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "faces" / "labels.json"
SIZE = (640, 360)
THREE_FACES = (2, 8, 21)  # frontal faces of bald_guys.jpg


def three_face_frames(n_frames: int) -> list:
    """uint8 (360, 640, 3) frames: three real faces (about 110 px tall) side by side, panning 0.5 px/frame."""
    image = {item.name: item for item in load_labelled_images(LABELS)}["bald_guys"]
    rgb = image.read_rgb()
    tiles = []
    for face in THREE_FACES:
        x0, y0, x1, y1 = image.boxes_px[face]
        centre, half = ((x0 + x1) / 2, (y0 + y1) / 2), 0.8 * max(x1 - x0, y1 - y0)
        scale = 200 / (2 * half)
        matrix = np.array([[scale, 0, 100 - scale * centre[0]], [0, scale, 100 - scale * centre[1]]])
        tiles.append(cv2.warpAffine(rgb, matrix, (200, 200), borderMode=cv2.BORDER_REFLECT))
    row = np.hstack(tiles)
    frames = []
    for k in range(n_frames):
        frame = np.full((SIZE[1], SIZE[0], 3), 90, np.uint8)
        x = 20 + int(0.5 * k) % 20
        frame[80:280, x:x + 600] = row
        frames.append(frame)
    return frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="clip length in frames")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs (median reported)")
    args = parser.parse_args()
    n = args.frames
    backends = {
        "mtcnn": (MtcnnFaceExtractor(FaceConfig()), MtcnnFaceExtractor(FaceConfig(multi_face=True))),
        "mtcnn-torch": (MtcnnFaceExtractor(FaceConfig(runtime="torch")),
                        MtcnnFaceExtractor(FaceConfig(runtime="torch", multi_face=True))),
        "dlib": (DlibFaceExtractor(FaceConfig(backend="dlib")), DlibFaceExtractor(FaceConfig(backend="dlib",
                                                                                             multi_face=True))),
    }
    images = load_labelled_images(LABELS)
    with tempfile.TemporaryDirectory() as tmp:
        one = clips.moving_face_clip(pathlib.Path(tmp) / "one.mp4", n_frames=n, size=SIZE)
        three = clips.write_clip(pathlib.Path(tmp) / "three.mp4", three_face_frames(n))
        decode_s = {path: time_runs(lambda p=path: sum(1 for _ in iter_frames(str(p))), args.repeats).median_s
                    for path in (one, three)}
        print(f"decode alone: {1000 * decode_s[one] / n:.2f} ms/frame (subtracted below)")
        first_frame = next(iter_frames(str(three))).rgb
        for name, (single, multi) in backends.items():
            for label, extractor, path in (("one face, single-face mode", single, one),
                                           ("three faces, multi-face mode", multi, three)):
                timing = time_runs(lambda e=extractor, p=path: list(e.extract(str(p))), args.repeats)
                frames = timing.result
                per_frame = lambda s, p=path: 1000 * (s - decode_s[p]) / n  # noqa: E731
                faces = sum(len(f.faces) for f in frames)
                ids = sorted({face.face_id for f in frames for face in f.faces})
                print(f"{name:11s} {label}: {per_frame(timing.median_s):.2f} ms/frame "
                      f"(best {per_frame(timing.best_s):.2f}); {faces / n:.2f} faces per frame, face ids {ids}"
                      + (f" [target <= {TARGET_MS_PER_FRAME} ms]" if extractor is single else ""))
            prepared = single._prepare(first_frame)
            detect = time_runs(lambda e=single, f=prepared: e._detect(f), args.repeats)
            print(f"{name:11s} full-frame detection at 640x360: {1000 * detect.median_s:.1f} ms, "
                  f"{len(detect.result[0])} faces")
            started = time.perf_counter()
            score = score_detections(images, single.find_faces)
            print(f"{name:11s} labelled photos: recall {score.recall(images):.3f} (turned "
                  f"{score.recall(images, lambda f: f['pose'] != 'frontal'):.3f}, small or dim "
                  f"{score.recall(images, lambda f: f['small'] or f['dim']):.3f}), "
                  f"{score.false_faces_per_image():.2f} false faces per image "
                  f"({time.perf_counter() - started:.1f} s for {len(images)} images)")


if __name__ == "__main__":
    main()
