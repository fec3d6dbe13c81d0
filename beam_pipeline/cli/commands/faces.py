"""``mimamo faces``: write the aligned face crops the model will see, in OpenFace's layout (spec 2.3)."""
import argparse
import logging
from pathlib import Path
from typing import List

from mimamo_ops.faces.backends import FACE_BACKENDS
from mimamo_ops.faces.output import write_faces
from mimamo_ops.faces.records import FaceConfig
from mimamo_ops.faces.stages import make_face_extractor

LOGGER = logging.getLogger(__name__)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "faces",
        help="extract aligned face crops from a video",
        description="Detect, track and align the faces of a video and write them as OpenFace does: "
        "OUTPUT/<stem>_aligned/frame_det_<face:02d>_<frame:06d>.bmp (frame numbers 1-based) and "
        "OUTPUT/<stem>.csv (frame, face_id, timestamp, confidence, success, box, 68 landmarks).",
    )
    parser.add_argument("video", metavar="VIDEO", help="input video file")
    parser.add_argument("--output", required=True, metavar="DIR", help="output directory (created if missing)")
    parser.add_argument("--multi-face", action="store_true", help="track every face (default: the largest one)")
    parser.add_argument("--face-backend", choices=FACE_BACKENDS, default=FACE_BACKENDS[0],
                        help="built-in face stage: mtcnn (default; turned, small and dim faces) or dlib (HOG, "
                        "frontal faces)")
    parser.add_argument("--openface-path", metavar="P",
                        help="OpenFace binary directory (or executable) to use instead of the built-in dlib stage")
    parser.add_argument("--template", metavar="PDM",
                        help="OpenFace's In-the-wild_aligned_PDM_68.txt (or OpenFace folder) as the built-in "
                        "stage's alignment template (default: the dlib-derived template)")
    parser.add_argument("--mask", action="store_true", help="black out the pixels outside the face")
    parser.add_argument("--face-size", type=int, default=112, help="aligned crop size in pixels (default 112)")
    parser.add_argument("--detect-every", type=int, default=FaceConfig.detect_every,
                        help="multi-face: run the full-frame detector every N frames to find new faces "
                        f"(default {FaceConfig.detect_every})")
    parser.add_argument("--upsample", type=int, default=FaceConfig.upsample,
                        help="dlib's HOG detector upsampling (dlib backend: its detector, 0: faces of ~80 px and "
                        "up, 1: ~40 px, 4x slower; mtcnn backend: the scan that starts frontal faces as the dlib "
                        "stage does)")
    parser.set_defaults(handler=extract_faces)


def extract_faces(args: argparse.Namespace, extra_args: List[str]) -> int:
    """Runs the face stage on one video and writes crops and CSV; returns the exit status (0)."""
    config = FaceConfig(backend=args.face_backend, multi_face=args.multi_face, face_size=args.face_size, mask=args.mask,
                        openface_path=args.openface_path, template_path=args.template,
                        detect_every=args.detect_every, upsample=args.upsample)
    extractor = make_face_extractor(config)
    video = Path(args.video)
    summary = write_faces(extractor.extract(str(video)), Path(args.output), video.stem)
    if summary.crops == 0:
        print(f"{video}: no face found in {summary.frames} frames; no crops written (CSV: {summary.csv_path})")
        return 0
    print(f"{video}: {summary.crops} crops of {len(summary.face_ids)} face(s) in {summary.frames_with_face} of "
          f"{summary.frames} frames -> {summary.aligned_dir} (CSV: {summary.csv_path})")
    return 0
