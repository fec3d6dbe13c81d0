"""What resumability costs, and what the tables of a 10^5-video corpus look like.

    .venv/bin/python bench/bench_resume.py [--videos 6] [--frames 20] [--repeats 3]

1. Commit cost. ``--videos`` one-face clips of ``--frames`` frames (640x360) run, in this process, through two
   pipelines built from the same transforms, alternated in pairs (``--repeats`` pairs, after one warm-up of each):

   * ``commits``: what every run does (``beam_pipeline.run.run``): the output's lock and run record, each video
     committed under ``_videos/`` as it is done, then the tables compacted from the commits;
   * ``end``: ``MatchVideos -> PredictValenceArousal -> WriteResultTables``, the tables written once at the end
     (not resumable, what non-local runs did before).

   It prints each pair, the medians, the median of the paired differences divided by the videos (the whole cost
   of resumability per video: commit, listing and compaction) and the median time of one video's commit as the
   ``commit_latency_ms`` metric measured it.

2. Sizes. What ``compaction.plan_shards`` (the planner the runs use) makes of 10^5 committed videos of several
   lengths in frame rows: files, rows per file, row groups and rows per row group; the file size in MiB is the
   rows times the bytes per frame row of the table the ``commits`` run compacted (real predictions on the
   clips, column data only).

The timings depend on the machine and its load; nothing here asserts them.
"""
import argparse
import math
import pathlib
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# pylint: disable=wrong-import-position
import apache_beam as beam  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from apache_beam.metrics.metric import MetricsFilter  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402

from bench.bench_pipeline import get_weights  # noqa: E402
from beam_pipeline.beam_compat import make_local_runner  # noqa: E402
from beam_pipeline.commits import RECORD_FILE, CommitListing  # noqa: E402
from beam_pipeline.compaction import ROW_GROUP_ROWS, TARGET_FILE_ROWS, VIDEO_ROWS_PER_FILE, plan_shards  # noqa: E402
from beam_pipeline.matching import MatchVideos  # noqa: E402
from beam_pipeline.options import MimamoOptions  # noqa: E402
from beam_pipeline.pipeline import predict_transform  # noqa: E402
from beam_pipeline.predict import ValenceArousalResult  # noqa: E402
from beam_pipeline.run import run  # noqa: E402
from beam_pipeline.sinks import WriteResultTables  # noqa: E402
from tests import clips  # noqa: E402

CORPUS_VIDEOS = 100_000
# frame rows per video: a 10 s clip, the 3,877-row file of the issue, a 6-minute interview, one face at 30 fps
CORPUS_ROWS_PER_VIDEO = (300, 3_877, 10_800)


def flags(folder: pathlib.Path, output: pathlib.Path, checkpoint, backbone) -> list:
    return ["--input", str(folder), "--output", str(output), "--checkpoint", str(checkpoint), "--backbone",
            str(backbone)]


def run_with_commits(folder, output, checkpoint, backbone):
    return run(flags(folder, output, checkpoint, backbone))


def run_writing_at_the_end(folder, output, checkpoint, backbone):
    options = PipelineOptions(flags(folder, output, checkpoint, backbone))
    mimamo = options.view_as(MimamoOptions)
    predict = predict_transform(mimamo)
    pipeline = beam.Pipeline(runner=make_local_runner(options), options=options)
    matched = pipeline | "CreateInputs" >> beam.Create(list(mimamo.input)) | "MatchVideos" >> MatchVideos()
    predicted = matched.videos | "PredictValenceArousal" >> predict
    videos = (predicted.videos, matched.failed) | "AddFailedMatches" >> beam.Flatten()
    _ = (ValenceArousalResult(predicted.frames, videos, predicted.snippets)
         | "WriteResultTables" >> WriteResultTables(str(output), predict.run_metadata()))
    result = pipeline.run()
    result.wait_until_finish()
    return result


def timed(function, *arguments) -> tuple:
    started = time.perf_counter()
    result = function(*arguments)
    return time.perf_counter() - started, result


def commit_latency_ms(result) -> float:
    """Mean of the ``commit_latency_ms`` distribution (ms per committed video)."""
    query = result.metrics().query(MetricsFilter().with_name("commit_latency_ms"))["distributions"]
    data = [item.committed for item in query if item.committed is not None]
    return sum(item.sum for item in data) / max(sum(item.count for item in data), 1)


def bytes_per_row(path: pathlib.Path) -> float:
    """Bytes of the column data per row of one Parquet file (its footer left out)."""
    metadata = pq.read_metadata(path)
    compressed = sum(metadata.row_group(index).column(column).total_compressed_size
                     for index in range(metadata.num_row_groups) for column in range(metadata.num_columns))
    return compressed / max(metadata.num_rows, 1)


def corpus_sizes(table_file: pathlib.Path) -> None:
    table_per_row = bytes_per_row(table_file)
    print(f"\nmeasured: the compacted frames table holds {table_per_row:.1f} bytes of column data per row "
          f"({pq.read_metadata(table_file).num_rows} rows)")
    print(f"{CORPUS_VIDEOS} videos (target {TARGET_FILE_ROWS} rows per file, row groups of {ROW_GROUP_ROWS} rows):")
    print("rows/video | frames files | rows/file | row groups/file | rows/row group | MiB/file | videos files")
    for rows in CORPUS_ROWS_PER_VIDEO:
        plans = plan_shards([CommitListing(f"{index:016x}", RECORD_FILE, rows, 0, ()) for index in range(CORPUS_VIDEOS)])
        file_rows = [len(plan.videos) * rows for plan in plans]
        groups = [math.ceil(count / ROW_GROUP_ROWS) for count in file_rows]
        per_group = [count / group for count, group in zip(file_rows, groups)]
        print(f"{rows:>10} | {len(plans):>12} | {statistics.median(file_rows):>9.0f} | "
              f"{statistics.median(groups):>15.0f} | {statistics.median(per_group):>14.0f} | "
              f"{statistics.median(file_rows) * table_per_row / 2 ** 20:>8.1f} | "
              f"{math.ceil(CORPUS_VIDEOS / VIDEO_ROWS_PER_FILE):>12}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-resume-") as temp:
        temp = pathlib.Path(temp)
        checkpoint, backbone, described = get_weights(temp)
        folder = temp / "clips"
        folder.mkdir()
        for index in range(args.videos):
            clips.moving_face_clip(folder / f"clip{index:03d}.mp4", n_frames=args.frames)
        print(f"{args.videos} clips of {args.frames} frames; {described}")
        run_with_commits(folder, temp / "warm-up-commits", checkpoint, backbone)  # imports, caches
        run_writing_at_the_end(folder, temp / "warm-up-end", checkpoint, backbone)
        pairs, latencies = [], []
        for repeat in range(args.repeats):
            first_commits = repeat % 2 == 0  # alternate which variant goes first
            order = ("commits", "end") if first_commits else ("end", "commits")
            times = {}
            for variant in order:
                output = temp / f"{variant}-{repeat}"
                function = run_with_commits if variant == "commits" else run_writing_at_the_end
                times[variant], result = timed(function, folder, output, checkpoint, backbone)
                if variant == "commits":
                    latencies.append(commit_latency_ms(result))
            pairs.append((times["commits"], times["end"]))
            print(f"pair {repeat + 1}: commits {times['commits']:.1f} s, end {times['end']:.1f} s, "
                  f"commit latency {latencies[-1]:.1f} ms/video")
        commits_s = statistics.median(pair[0] for pair in pairs)
        end_s = statistics.median(pair[1] for pair in pairs)
        extra_s = statistics.median(pair[0] - pair[1] for pair in pairs)
        print(f"median: commits {commits_s:.1f} s, end {end_s:.1f} s; paired difference {extra_s:.2f} s = "
              f"{extra_s / args.videos * 1000:.0f} ms per video; commit step {statistics.median(latencies):.1f} "
              "ms per video")
        last = temp / f"commits-{args.repeats - 1}"
        corpus_sizes(next((last / "frames").glob("*.parquet")))


if __name__ == "__main__":
    main()
