"""Compares face-detector candidates on the labelled real photos (issue 9's evaluation): recall, false faces and
time per 640-wide frame, for MTCNN (our default), dlib's HOG and, from a JSON written by
``bench/mediapipe_boxes.py`` in a venv of its own, MediaPipe's detectors and face mesh.

Run: ``.venv/bin/python bench/bench_detector_candidates.py [--mediapipe /tmp/mediapipe_boxes.json]``.

Detector boxes follow each detector's own convention (MTCNN's and MediaPipe's are squarer and reach higher than
the labels, which are the bounding boxes of the 68 landmarks), so a face counts as found at IoU 0.3 here (the
stages' own recall at IoU 0.5 on fitted landmarks is in ``bench_faces.py``); "stage" rows are the full built-in
stages (detection, landmark fit, check) scored on their landmark boxes at IoU 0.5. Times: each photo resized to
640 wide, the median over the set of the mean of three runs after one warm-up.
"""
import argparse
import json
import pathlib
import sys
import time
from typing import Dict

import cv2
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from mimamo_ops.faces.dlib_stage import DlibFaceExtractor  # noqa: E402
from mimamo_ops.faces.evaluation import load_labelled_images, score_boxes  # noqa: E402
from mimamo_ops.faces.landmark_model import LandmarkModel  # noqa: E402
from mimamo_ops.faces.mtcnn_model import MtcnnDetector  # noqa: E402
from mimamo_ops.faces.mtcnn_stage import MtcnnFaceExtractor  # noqa: E402
from mimamo_ops.faces.records import FaceConfig  # noqa: E402
from mimamo_ops.faces.tracking import landmark_box  # noqa: E402

LABELS = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "faces" / "labels.json"


def score(images, boxes: Dict[str, np.ndarray], min_iou: float) -> str:
    """One table row's recall (all, turned, small or dim) and false faces per image."""
    result = score_boxes(images, boxes, min_iou)
    return (f"{result.recall(images):.3f} | {result.recall(images, lambda f: f['pose'] != 'frontal'):.3f} | "
            f"{result.recall(images, lambda f: f['small'] or f['dim']):.3f} | {result.false_faces_per_image():.2f}")


def ms_per_frame(run, images) -> float:
    times = []
    for image in images:
        rgb = image.read_rgb()
        frame = cv2.resize(rgb, (640, int(round(rgb.shape[0] * 640 / rgb.shape[1]))))
        run(frame)
        started = time.perf_counter()
        for _ in range(3):
            run(frame)
        times.append(1000 * (time.perf_counter() - started) / 3)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mediapipe", type=pathlib.Path, help="JSON from bench/mediapipe_boxes.py")
    args = parser.parse_args()
    images = load_labelled_images(LABELS)
    defaults = FaceConfig()
    mtcnn = MtcnnDetector(min_face_px=defaults.min_face_px, thresholds=(0.6, 0.7, defaults.min_face_probability))
    hog = LandmarkModel()

    def hog_boxes(rgb, upsample):
        return hog.detect(np.ascontiguousarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)), upsample, 0.0)[0]

    detectors = {
        "mtcnn detector (default)": lambda rgb: mtcnn.detect(rgb).boxes,
        "dlib HOG, upsample 0": lambda rgb: hog_boxes(rgb, 0),
        "dlib HOG, upsample 1": lambda rgb: hog_boxes(rgb, 1),
    }
    print("| candidate | recall | turned | small or dim | false faces per image | ms per 640-wide frame |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, run in detectors.items():
        boxes = {image.name: run(image.read_rgb()) for image in images}
        print(f"| {name} | {score(images, boxes, 0.3)} | {ms_per_frame(run, images):.1f} |")
    if args.mediapipe:
        found = json.loads(args.mediapipe.read_text(encoding="utf-8"))
        for name, entry in found["candidates"].items():
            print(f"| {name} {found['mediapipe_version']} | {score(images, entry['boxes'], 0.3)} | "
                  f"{entry['ms_per_640_frame']:.1f} |")
    for name, stage in (("mtcnn stage", MtcnnFaceExtractor(FaceConfig())),
                        ("dlib stage", DlibFaceExtractor(FaceConfig(backend="dlib")))):
        def run(rgb, stage=stage):
            return [landmark_box(landmarks) for landmarks, _ in stage.find_faces(rgb)]
        boxes = {image.name: run(image.read_rgb()) for image in images}
        print(f"| {name}, IoU 0.5 on landmark boxes | {score(images, boxes, 0.5)} | {ms_per_frame(run, images):.1f} |")


if __name__ == "__main__":
    main()
