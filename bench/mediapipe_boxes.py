"""Runs MediaPipe's face detectors and face mesh on the labelled photos and writes their boxes as JSON, for
``bench/bench_detector_candidates.py`` (the face-stage candidate comparison of issue 9).

MediaPipe is not a dependency of this project (0.10.14, the last release whose wheel carries the models, needs
protobuf<5, jax, matplotlib and opencv-contrib-python, which clashes with our opencv-python-headless), so run
this in a venv of its own, which needs nothing of ours::

    python3 -m venv /tmp/mp && /tmp/mp/bin/pip install mediapipe==0.10.14
    /tmp/mp/bin/python bench/mediapipe_boxes.py --output /tmp/mediapipe_boxes.json

Writes, per candidate (``mediapipe-short``, ``mediapipe-full``: the short- and full-range detectors;
``mediapipe-mesh``: the 468-point face mesh's bounding box) and image, the boxes (x0, y0, x1, y1) pixels, and
per candidate the median milliseconds for one 640x360 frame (the three-face frame of ``bench_faces.py``'s
layout is not rebuilt here: each labelled photo resized to 640 wide, median over the set).
"""
import argparse
import json
import pathlib
import time

import cv2
import mediapipe as mp
import numpy as np

LABELS = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "faces" / "labels.json"


def detector_boxes(detector, rgb: np.ndarray) -> list:
    height, width = rgb.shape[:2]
    found = detector.process(rgb).detections or []
    boxes = []
    for detection in found:
        box = detection.location_data.relative_bounding_box
        boxes.append([box.xmin * width, box.ymin * height, (box.xmin + box.width) * width,
                      (box.ymin + box.height) * height])
    return boxes


def mesh_boxes(mesh, rgb: np.ndarray) -> list:
    height, width = rgb.shape[:2]
    found = mesh.process(rgb).multi_face_landmarks or []
    boxes = []
    for face in found:
        points = np.array([[p.x * width, p.y * height] for p in face.landmark])
        boxes.append([*points.min(axis=0).tolist(), *points.max(axis=0).tolist()])
    return boxes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="JSON file to write")
    args = parser.parse_args()
    labels = json.loads(LABELS.read_text(encoding="utf-8"))
    images = {name: cv2.cvtColor(cv2.imread(str(LABELS.parent / entry["file"])), cv2.COLOR_BGR2RGB)
              for name, entry in labels["images"].items()}
    candidates = {
        "mediapipe-short": (mp.solutions.face_detection.FaceDetection(model_selection=0,
                                                                      min_detection_confidence=0.5), detector_boxes),
        "mediapipe-full": (mp.solutions.face_detection.FaceDetection(model_selection=1,
                                                                     min_detection_confidence=0.5), detector_boxes),
        "mediapipe-mesh": (mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=30,
                                                           min_detection_confidence=0.5), mesh_boxes),
    }
    result = {"mediapipe_version": mp.__version__, "candidates": {}}
    for name, (model, run) in candidates.items():
        boxes = {image: run(model, rgb) for image, rgb in images.items()}
        times = []
        for rgb in images.values():
            frame = cv2.resize(rgb, (640, int(round(rgb.shape[0] * 640 / rgb.shape[1]))))
            run(model, frame)
            started = time.perf_counter()
            for _ in range(3):
                run(model, frame)
            times.append(1000 * (time.perf_counter() - started) / 3)
        result["candidates"][name] = {"boxes": boxes, "ms_per_640_frame": float(np.median(times))}
        print(f"{name}: {sum(len(b) for b in boxes.values())} faces, {np.median(times):.1f} ms per 640-wide frame")
    pathlib.Path(args.output).write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
