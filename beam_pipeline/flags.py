"""The flags of the MIMAMO-Net pipeline as plain ``argparse`` declarations, with no Beam import.

``MimamoOptions`` (``beam_pipeline.options``) declares them for Beam; ``mimamo run`` adds them to its own parser,
so that ``mimamo run --help`` does not import Apache Beam. The seed's names are kept where they still mean the
same thing (spec section 11.1).
"""
import argparse
from typing import List

from mimamo_ops.faces.backends import FACE_BACKENDS
from mimamo_ops.faces.isolation import (DEFAULT_MAX_FRAME_PIXELS, DEFAULT_STALL_TIMEOUT_S,
                                        DEFAULT_VIDEO_MEMORY_BUDGET_MB)
from mimamo_ops.runtime.cpu_features import bf16_units
from mimamo_ops.runtime.selection import RUNTIMES

DEFAULT_WORK_UNIT_S = 30.0  # seconds of video per work unit (beam_pipeline.units; measured in docs/performance.md)
# process: every worker process loads its own backbone. machine: one backbone per machine, in the first process
# that asks, fed by all of them in shared batches (beam_pipeline.model_loading). auto: machine on a GPU.
BACKBONE_SHARING = ("auto", "process", "machine")

__all__ = ["BACKBONE_SHARING", "DEFAULT_VIDEO_EXTENSIONS", "DEFAULT_WORK_UNIT_S", "FIXED_BY_CHECKPOINT", "PRECISIONS", "add_mimamo_arguments",
           "mimamo_option_names"]

DEFAULT_VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")

# Values the official checkpoint and the ResNet-50 FER+ backbone fix (spec sections 3, 4, 7, 11.1).
FIXED_BY_CHECKPOINT = {
    "num_phase": 12,
    "phase_size": 48,
    "nbands": 2,
    "scale_factor": 2.0,
    "model_name": "resnet50_ferplus_dag",
    "feature_layer": "pool5_7x7_s1",
}
MIN_PYRAMID_HEIGHT = 3  # levels 1 and 2 feed the phase stream (spec 7.7), so the pyramid needs 3 levels or more
MAX_PYRAMID_HEIGHT = 4  # floor(log2(96)) - 2 for the 96x96 mirror-extended face (spec 7.1)
PRECISIONS = ("fp32", "bf16")


def _bf16_note() -> str:
    units = bf16_units()
    if units:
        return f"This CPU has {', '.join(units)}."
    return "This CPU has no bf16 units (no AMX, no AVX512_BF16)."


def _split_extensions(text: str) -> List[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_mimamo_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds every MIMAMO flag, in groups, with its help text, to ``parser``."""
    io_group = parser.add_argument_group("inputs and outputs")
    io_group.add_argument(
        "--input", action="append", default=None,
        help="A video file, a directory of videos, a glob, or a text file (.txt/.lst/.list) with one URI per "
        "line; local, gs:// or s3://. Repeat the flag for several inputs.",
    )
    io_group.add_argument(
        "--output", default=None,
        help="Output directory (local, gs:// or s3://). Parquet tables go to <output>/frames/ (one row per "
        "video, face and frame) and <output>/videos/ (one row per input video, failures included).",
    )
    io_group.add_argument(
        "--video_extensions", type=_split_extensions, default=list(DEFAULT_VIDEO_EXTENSIONS),
        help="Comma-separated extensions picked up when an input is a directory (case-insensitive, each "
        f"starting with '.'). Default: {','.join(DEFAULT_VIDEO_EXTENSIONS)}. Seed option: --video_exts.",
    )
    io_group.add_argument(
        "--num_shards", type=int, default=0,
        help="Number of Parquet files per table; 0 lets the runner decide.",
    )
    io_group.add_argument(
        "--videos_per_commit", type=int, default=None,
        help="Deprecated, no effect: every run commits each video on its own as soon as it is done, on every "
        "runner and output (README, Resuming a run). Still accepted so that older commands run.",
    )
    io_group.add_argument(
        "--keep_intermediates", action="store_true", default=False,
        help="Also write every snippet's raw prediction to <output>/snippets/ (Parquet: video, face, snippet "
        "index, frame index, valence, arousal) before stitching and smoothing. Seed option: --keep_tmp.",
    )
    io_group.add_argument(
        "--progress_dir", default=None,
        help="Local directory where workers append progress records (videos and frames done); `mimamo run` "
        "sets it to drive its progress bar. Leave unset on remote runners.",
    )

    model_group = parser.add_argument_group("model")
    model_group.add_argument(
        "--checkpoint", default=None,
        help="MIMAMO-Net checkpoint (.pth.tar). Default: the official weights in the user cache "
        "(`mimamo weights fetch`). Seed option: --model_path.",
    )
    model_group.add_argument(
        "--backbone", default=None,
        help="ResNet-50 FER+ weights (resnet50_ferplus_dag.pth). Default: the user cache. Seed option: "
        "--benchmark_path (a directory holding ferplus/).",
    )
    model_group.add_argument(
        "--model_name", default=FIXED_BY_CHECKPOINT["model_name"],
        help="Backbone network; only resnet50_ferplus_dag, the backbone the checkpoint was trained on.",
    )
    model_group.add_argument(
        "--feature_layer", default=FIXED_BY_CHECKPOINT["feature_layer"],
        help="Backbone layer whose output feeds the RGB stream; only pool5_7x7_s1 (2048 features, spec 3.4).",
    )
    model_group.add_argument(
        "--device", default="cpu", help="Torch device for the networks, e.g. cpu, cuda, cuda:0."
    )
    model_group.add_argument(
        "--precision", default="fp32", choices=PRECISIONS,
        help="Arithmetic of the backbone. fp32 (default) matches the reference. bf16 changes the features by "
        "up to ~0.5%% of their range and is only faster on GPUs and CPUs with bf16 units (AMX or "
        "AVX512_BF16: 1.64x the fp32 rate on a 2-vCPU AMX machine in our records); elsewhere it is slower. "
        f"{_bf16_note()}",
    )
    model_group.add_argument(
        "--runtime", "--backbone_runtime", dest="backbone_runtime", default="auto", choices=RUNTIMES,
        help="Runtime of the backbone and of the MTCNN face networks. auto: OpenVINO on the CPU (converted once "
        "from the weights and cached by their SHA-256 under <weights cache>/compiled), torch on GPUs. torch: plain "
        "PyTorch everywhere. Speed only: both give the reference numbers within the parity tolerances.",
    )
    model_group.add_argument(
        "--threads_per_worker", type=int, default=0,
        help="Threads of every library (torch, OpenMP, OpenVINO, OpenCV, FFmpeg) in each worker process. 0: "
        "the process's usable CPUs (affinity mask, cgroup quota) divided by the worker processes per machine "
        "(--direct_num_workers in multi_processing mode, --sdk_worker_parallelism on portable runners, one "
        "per vCPU on Dataflow).",
    )
    model_group.add_argument(
        "--gru_sequence_snippets", "--batch_size", dest="gru_sequence_snippets", type=int, default=64,
        help="Consecutive snippets of one face track that go through the GRU as one sequence (spec 4.4). It "
        "changes the numbers: 64 reproduces the official example, 1 the seed's default --batch_size.",
    )
    model_group.add_argument(
        "--compute_batch_size", type=int, default=0,
        help="Faces per backbone forward pass; 0 picks one for the device (16 on CPU, sized to the free "
        "memory on a GPU). Memory and speed only; results do not depend on it.",
    )
    model_group.add_argument(
        "--backbone_sharing", choices=BACKBONE_SHARING, default="auto",
        help="process: each worker process loads its own backbone. machine: one backbone per machine, loaded by "
        "the first process that asks and fed by every process's faces in shared batches (one model per GPU, "
        "its batch sized for the whole GPU). auto (default): machine on a GPU, process on the CPU. Memory and "
        "speed only; results do not depend on it.",
    )
    model_group.add_argument(
        "--n_workers", type=int, default=None,
        help="Worker processes on the local DirectRunner (sets --direct_num_workers and, when > 1, "
        "--direct_running_mode=multi_processing). Other runners size their own workers.",
    )
    model_group.add_argument(
        "--work_unit_s", type=float, default=DEFAULT_WORK_UNIT_S,
        help="Seconds of video per work unit. A longer video runs its face stage in one pass, then its model work "
        "(backbone, pyramid: most of the time) in units that different workers compute at once, joined per "
        "video; a unit also closes once it holds that many seconds' worth of faces (crowds: shorter units). The "
        "rows are the same as unsplit. 0: a video is never split. Default: "
        f"{DEFAULT_WORK_UNIT_S:g}.",
    )

    face_group = parser.add_argument_group("faces")
    face_group.add_argument(
        "--openface_path", default=None,
        help="Directory of the OpenFace 2.x binaries. Default: the built-in face stage (--face_backend).",
    )
    face_group.add_argument(
        "--face_backend", choices=FACE_BACKENDS, default=FACE_BACKENDS[0],
        help="Built-in face stage: mtcnn (default; MTCNN detector, finds turned, small and dim faces) or dlib "
        "(dlib's HOG detector, frontal faces only). Both fit dlib's 68 landmarks and align as OpenFace.",
    )
    face_group.add_argument(
        "--multi_face", action="store_true", default=False,
        help="Track every face in the video; each face gets its own id and rows. Default: one face.",
    )
    face_group.add_argument(
        "--face_size", type=int, default=112,
        help="Side of the aligned face in pixels (OpenFace -simsize); other values than 112 change results.",
    )
    face_group.add_argument(
        "--mask", action="store_true", default=False,
        help="Mask the aligned face outside the landmark hull (the seed's default is unmasked faces).",
    )

    guard_group = parser.add_argument_group("fault isolation")
    guard_group.add_argument(
        "--max_frame_pixels", type=int, default=DEFAULT_MAX_FRAME_PIXELS,
        help="Largest frame accepted, width x height in pixels, checked before any frame is decoded; a larger "
        "video fails alone ('frame 8192x8192 over the limit'). The face stage needs about 140 bytes per pixel "
        f"(bench/bench_face_memory.py). Default: {DEFAULT_MAX_FRAME_PIXELS} (every 4K video passes, 5K and 8K "
        "do not).",
    )
    guard_group.add_argument(
        "--video_memory_budget_mb", type=int, default=DEFAULT_VIDEO_MEMORY_BUDGET_MB,
        help="Memory in MB (2**20 bytes) by which the face stage's process may grow while it decodes one video "
        "and finds its faces; over it, the process is killed and that video fails ('over its memory "
        f"budget'). Default: {DEFAULT_VIDEO_MEMORY_BUDGET_MB}.",
    )
    guard_group.add_argument(
        "--stall_timeout_s", type=float, default=DEFAULT_STALL_TIMEOUT_S,
        help="Seconds the pipeline waits for the face stage's next frame of a video; past it, the face stage's "
        f"process is killed and that video fails ('no new frame for N s'). Default: {DEFAULT_STALL_TIMEOUT_S:g}.",
    )
    guard_group.add_argument(
        "--video_disk_budget_mb", type=float, default=None,
        help="Largest remote video (gs://, s3://) copied to the worker's temp disk, in MB (2**20 bytes); a larger "
        "one, or one that does not fit the free space, is decoded straight from storage (read twice: probe and "
        "decode). Default: no budget, copy whatever fits. With --openface_path a video over it fails, since "
        "OpenFace reads local files only.",
    )
    guard_group.add_argument(
        "--face_stage_in_process", action="store_true", default=False,
        help="Decode and find faces in the worker process itself instead of a supervised child process per "
        "worker (the default, which costs one video for a native crash, a hang or a memory blow-up). In "
        "process, a crash of FFmpeg, dlib, OpenCV or OpenVINO kills the worker and --video_memory_budget_mb "
        "and --stall_timeout_s do not apply; for debugging and profiling in one process.",
    )

    snippet_group = parser.add_argument_group("snippets and phase features")
    snippet_group.add_argument(
        "--num_phase", type=int, default=FIXED_BY_CHECKPOINT["num_phase"],
        help="Phase-difference window size minus one (spec 6.4); fixed to 12 by the checkpoint.",
    )
    snippet_group.add_argument(
        "--phase_size", type=int, default=FIXED_BY_CHECKPOINT["phase_size"],
        help="Side in pixels of the grey face used for phase (spec 6.5); fixed to 48 by the checkpoint.",
    )
    snippet_group.add_argument(
        "--length", type=int, default=64, help="Snippet length in face frames (spec 6.2)."
    )
    snippet_group.add_argument(
        "--stride", type=int, default=64,
        help="Snippet stride in face frames (spec 6.2); less than --length overlaps, later snippets win.",
    )
    snippet_group.add_argument(
        "--height", type=int, default=4,
        help=f"Steerable pyramid height (spec 7), {MIN_PYRAMID_HEIGHT}..{MAX_PYRAMID_HEIGHT}.",
    )
    snippet_group.add_argument(
        "--nbands", type=int, default=FIXED_BY_CHECKPOINT["nbands"],
        help="Steerable pyramid orientations (spec 7.4); fixed to 2 by the checkpoint.",
    )
    snippet_group.add_argument(
        "--scale_factor", type=float, default=FIXED_BY_CHECKPOINT["scale_factor"],
        help="Steerable pyramid scale step between levels (spec 7.3); fixed to 2 by the checkpoint.",
    )
    snippet_group.add_argument(
        "--smoothing_size", type=float, default=None,
        help="Moving-average window in seconds for the smoothed columns (spec 11.2); unset or 0: the "
        "smoothed columns equal the raw ones.",
    )

    watch_group = parser.add_argument_group("watch mode")
    watch_group.add_argument(
        "--watch", action="store_true", default=False,
        help="Keep running: scan the inputs every --watch_interval seconds and process each new video once "
        "it has stopped growing; videos with results in --output are never processed again, also after a "
        "restart. Ctrl-C stops after the current batch. The seed's daemon mode.",
    )
    watch_group.add_argument(
        "--watch_interval", "--watch-interval", dest="watch_interval", type=float, default=10.0,
        help="Seconds between two scans of the inputs in --watch mode; a video is taken once its size and "
        "modification time are the same at two consecutive scans.",
    )
    watch_group.add_argument(
        "--watch_batch_size", type=int, default=1,
        help="Videos per pipeline run in --watch mode; Ctrl-C waits for the batch being processed.",
    )

    log_group = parser.add_argument_group("logging")
    log_group.add_argument(
        "--log", action="store_true", default=False, help="Log to the console at INFO level."
    )
    log_group.add_argument(
        "--logdir", default=None, help="Also log at DEBUG level to <logdir>/mimamo.log (created if missing)."
    )


def mimamo_option_names() -> List[str]:
    """The destination names of every MIMAMO flag (``input``, ``output``, ``length``...), in declaration order."""
    parser = argparse.ArgumentParser(add_help=False)
    add_mimamo_arguments(parser)
    return [action.dest for action in parser._actions]  # pylint: disable=protected-access
