"""``make cluster-demo``: the sample clip through a local Flink cluster, then the first rows, then everything stops.

Steps: prepare Flink 1.19 and Beam's Flink job server (``cluster.prepare``, cached); the official weights, or
stand-in weights when they cannot be had (as ``make demo``, which says so); start a JobManager and two TaskManagers on 127.0.0.1 (``cluster.local``); write the sample
clip (``beam_pipeline.cli.demo``); run the pipeline with ``--runner=FlinkRunner`` (LOOPBACK: the SDK harness runs
in this process); print the first rows with DuckDB; stop every cluster process.
"""
import argparse
import logging
import shutil
import sys
from pathlib import Path
from typing import List, Optional


from beam_pipeline.cli.demo import choose_weights, print_sample_rows, write_sample_clip
from beam_pipeline.run import run
from cluster import local
from cluster.prepare import prepare

__all__ = ["main"]

LOGGER = logging.getLogger(__name__)


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the demo; returns the exit status (0 when the sample clip gave rows)."""
    parser = argparse.ArgumentParser(prog="python -m cluster.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="demo-output/flink", help="where the clip, cluster logs and results go")
    parser.add_argument("--offline", action="store_true",
                        help="never download: official weights from the cache, else stand-in weights")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    files = prepare(("flink",))
    workdir = Path(args.workdir).resolve()
    weight_flags, stand_in = choose_weights(workdir, args.offline)
    clip = workdir / "sample.mp4"
    if not clip.exists():
        write_sample_clip(clip)
    output = workdir / "results"
    shutil.rmtree(output, ignore_errors=True)  # the pipeline refuses to mix its shards with an earlier run's
    shutil.rmtree(workdir / "cluster", ignore_errors=True)
    with local.flink_cluster(files.flink_home, workdir / "cluster", task_managers=2,
                             beam_jar=files.flink_job_server_jar) as cluster:
        LOGGER.info("Flink cluster up: %s (web UI %s)", cluster.flink_master, cluster.rest_url)
        run(["--input", str(clip), "--output", str(output), *weight_flags, "--smoothing_size", "0.5",
             "--runner=FlinkRunner", f"--flink_master={cluster.flink_master}", "--flink_version=1.19",
             f"--flink_job_server_jar={files.flink_job_server_jar}", "--parallelism=2",
             "--environment_type=LOOPBACK",
             *(f"--job_server_jvm_property={option}" for option in local.SHORT_LIVED_JVM_OPTIONS)])
    print_sample_rows(output, stand_in)
    return 0


if __name__ == "__main__":
    sys.exit(main())
