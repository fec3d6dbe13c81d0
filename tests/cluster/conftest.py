"""Session fixtures of the cluster tests: the prepared engines, the clips, weights on a Cloud Storage emulator.

The clusters themselves are started once per session (``flink`` and ``spark``), with one Beam EXTERNAL worker
pool beside each TaskManager / Spark worker (``cluster.local``); every process they start is stopped at the
end of the session, also when a test fails.
"""
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pyarrow as pa
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from beam_pipeline import remote_files
from beam_pipeline.beam_compat import use_anonymous_gcs_for_emulator
from beam_pipeline.run import run
from cluster import local
from cluster.prepare import ClusterFiles, prepare
from tests.local_servers import BUCKET
from tests.pipeline.conftest import clip_folder, gcs_emulator  # noqa: F401  pylint: disable=unused-import
from tests.pipeline.test_cloud_storage import upload
from tests.pipeline.test_pipeline import KEY_COLUMNS, pipeline_flags, read_sorted

PROBE_DIR = Path(__file__).resolve().parent / "probe"
COPIES = ("copy_a.mp4", "copy_b.mp4")


@pytest.fixture(scope="session")
def remote_weights(gcs_emulator, synthetic_weights, tmp_path_factory) -> Iterator[Tuple[str, str]]:
    """(checkpoint, backbone) as gs:// URIs on the emulator; this process uses its own weights cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
        patch.setenv("MIMAMO_CACHE_DIR", str(tmp_path_factory.mktemp("launcher-cache")))
        use_anonymous_gcs_for_emulator()
        FileSystems.set_options(PipelineOptions([]))
        uris = tuple(f"gs://{BUCKET}/cluster/{path.name}" for path in synthetic_weights)
        for path, uri in zip(synthetic_weights, uris):
            upload(path, uri)
        yield uris


@pytest.fixture(scope="session")
def direct_rows(clip_folder, synthetic_weights, tmp_path_factory) -> Dict[str, pa.Table]:
    """The DirectRunner's tables on the clip folder, with the weights as local files."""
    output = tmp_path_factory.mktemp("direct")
    run(pipeline_flags(clip_folder, synthetic_weights, output))
    return {"frames": read_sorted(output / "frames", KEY_COLUMNS),
            "videos": read_sorted(output / "videos", ["video_uri"])}


@pytest.fixture(scope="session")
def copies_folder(clip_folder, tmp_path_factory) -> Path:
    """Two byte-for-byte copies of the one-face clip: with them four of the seven inputs take seconds, not
    milliseconds. The runner may still give one worker only quick ones; ``engine_checks.probe_barrier`` makes
    the overlap check hold whatever it gives."""
    folder = tmp_path_factory.mktemp("copies")
    for name in COPIES:
        shutil.copyfile(clip_folder / "one_face.mp4", folder / name)
    return folder


@dataclass
class Running:
    """A started cluster and the folder its worker processes' probe records go to."""

    cluster: object
    probe_dir: Path
    files: ClusterFiles  # the engine's distribution and job-server jar (``cluster.prepare``, SHA-256 checked)


def pool_environment(gcs_emulator: str, probe_dir: Path, cache_root: Path):
    """The environment of worker pool ``index``: the emulator, its own weights cache, the test probe."""
    def environment(index: int) -> Dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": gcs_emulator, "MIMAMO_CACHE_DIR": str(cache_root / f"pool-{index}"),
                "MIMAMO_PROBE_DIR": str(probe_dir), "PYTHONPATH": str(PROBE_DIR)}
    return environment


@pytest.fixture(scope="session")
def flink(gcs_emulator, tmp_path_factory) -> Iterator[Running]:
    """A Flink 1.19 cluster: a JobManager, two TaskManagers (one slot each), a worker pool beside each, Beam's
    runner on the daemons' class path (so that they keep a job's SDK environments)."""
    files = prepare(("flink",))  # cached: `make test` prepares it before the tests
    workdir = tmp_path_factory.mktemp("flink")
    probe_dir = workdir / "probe"
    probe_dir.mkdir()
    with local.flink_cluster(files.flink_home, workdir, task_managers=2, worker_pools=True,
                             pool_env=pool_environment(gcs_emulator, probe_dir, workdir / "caches"),
                             beam_jar=files.flink_job_server_jar) as cluster:
        yield Running(cluster, probe_dir, files)


@pytest.fixture(scope="session")
def spark(gcs_emulator, tmp_path_factory) -> Iterator[Running]:
    """A Spark 3.5 standalone master with two workers (one core each), a worker pool beside each."""
    files = prepare(("spark",))
    workdir = tmp_path_factory.mktemp("spark")
    probe_dir = workdir / "probe"
    probe_dir.mkdir()
    with local.spark_cluster(files.spark_home, workdir, workers=2, worker_pools=True,
                             pool_env=pool_environment(gcs_emulator, probe_dir, workdir / "caches")) as cluster:
        yield Running(cluster, probe_dir, files)


def read_probe(probe_dir: Path) -> List[dict]:
    """Every record the probe wrote (``probe/sitecustomize.py``)."""
    return [json.loads(line) for path in sorted(probe_dir.glob("*.jsonl")) for line in path.read_text().splitlines()]
