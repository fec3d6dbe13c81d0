"""``mimamo predict-aligned``: per-frame valence/arousal for a folder of aligned faces (OpenFace layout)."""
import argparse
import csv
import itertools
import logging
import pathlib
from typing import List, Tuple

from mimamo_ops.runtime.selection import RUNTIMES

LOGGER = logging.getLogger(__name__)
COLUMNS = ("frame", "valence", "arousal")
ROWS_PER_WRITE = 4096  # rows per CSV write and per Parquet row group
Row = Tuple[int, float, float, float]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict-aligned",
        help="valence/arousal for a folder of aligned faces",
        description="Per-frame valence and arousal for aligned 112x112 faces in OpenFace's layout "
        "(DIR/*_aligned/frame_det_00_000001.bmp) or images directly in DIR. Frames are taken in "
        "frame-number order, as the original did.",
    )
    parser.add_argument("directory", metavar="DIR", help="OpenFace output folder or folder of face images")
    parser.add_argument("--output", required=True, help="output file, .csv or .parquet")
    parser.add_argument("--checkpoint", help="model_weights.pth.tar (default: the weights cache)")
    parser.add_argument("--backbone", help="resnet50_ferplus_dag.pth (default: the weights cache)")
    parser.add_argument("--face-id", type=int, default=0, help="face id in frame_det_<id>_<frame> names (default 0)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    parser.add_argument("--batch-size", type=int, default=0,
                        help="faces per backbone batch (speed and memory only); 0 picks one for the device")
    parser.add_argument(
        "--gru-sequence-snippets",
        type=int,
        default=64,
        help="consecutive 64-face snippets per GRU sequence; 64 reproduces the authors' reference run",
    )
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="bf16 is not exact, and faster only on GPUs and CPUs with AMX or AVX512_BF16")
    parser.add_argument("--runtime", choices=RUNTIMES, default="auto",
                        help="backbone runtime: auto (OpenVINO on the CPU, torch on GPUs), torch or openvino; "
                        "speed only, the same numbers within the parity tolerances")
    parser.set_defaults(handler=predict_aligned)


class _RowWriter:
    """Writes (frame, valence, arousal) rows to CSV or Parquet as they come."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.count = 0
        suffix = path.suffix.lower()
        if suffix not in (".csv", ".parquet"):
            raise ValueError(f"{path}: output must end in .csv or .parquet")
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".csv":
            self._file = open(path, "w", newline="")
            self._csv = csv.writer(self._file)
            self._csv.writerow(COLUMNS)
            self._parquet = None
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            self._schema = pa.schema([(COLUMNS[0], pa.int64()), (COLUMNS[1], pa.float32()),
                                      (COLUMNS[2], pa.float32())])
            self._parquet = pq.ParquetWriter(path, self._schema)

    def write(self, rows: List[Row]) -> None:
        if not rows:
            return
        self.count += len(rows)
        if self._parquet is None:
            self._csv.writerows((frame, valence, arousal) for frame, _, valence, arousal in rows)
            return
        frames, _, valence, arousal = zip(*rows)
        import pyarrow as pa

        self._parquet.write_table(pa.table([list(frames), list(valence), list(arousal)], schema=self._schema))

    def close(self) -> None:
        if self._parquet is None:
            self._file.close()
        else:
            self._parquet.close()


def predict_aligned(args: argparse.Namespace, extra_args: List[str]) -> int:
    from mimamo_ops.decoding.aligned_faces import list_aligned_faces, read_aligned_faces
    from mimamo_ops.model.predictor import MimamoModel, ModelConfig, predict_face_sequence
    from mimamo_ops.weights.cache import resolve_weights

    faces = list_aligned_faces(args.directory, args.face_id)
    checkpoint, backbone = resolve_weights(args.checkpoint, args.backbone)
    config = ModelConfig(
        str(checkpoint),
        str(backbone),
        device=args.device,
        backbone_batch_size=args.batch_size,
        gru_sequence_snippets=args.gru_sequence_snippets,
        precision=args.precision,
        runtime=args.runtime,
    )
    model = MimamoModel.load(config)
    writer = _RowWriter(pathlib.Path(args.output))
    crops = ((frame, 0.0, face) for frame, face in read_aligned_faces(faces))
    rows = predict_face_sequence(model, crops)
    try:
        for chunk in iter(lambda: list(itertools.islice(rows, ROWS_PER_WRITE)), []):
            writer.write(chunk)
    finally:
        writer.close()
    LOGGER.info("wrote %d rows to %s", writer.count, writer.path)
    return 0
