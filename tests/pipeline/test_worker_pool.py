"""What a cluster needs: the graph pickles, and a fresh worker process sets itself up from the weight URIs.

The worker side runs as on Flink, Spark or Dataflow's portable path: the job goes through ``PortableRunner`` to
Beam's local job service, whose workers come from ``worker_pool_main`` (an EXTERNAL environment) on 127.0.0.1.
Each worker is a new Python process with its own weights cache; the checkpoint is served by the Cloud Storage
emulator, so the worker must fetch it from ``gs://`` in its DoFn setup.
"""
import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

import apache_beam as beam
import numpy as np
import pyarrow.parquet as pq
import pytest
from apache_beam.internal import pickler
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.pipeline import PipelineVisitor

from beam_pipeline.beam_compat import use_anonymous_gcs_for_emulator
from beam_pipeline.pipeline import build_pipeline
from beam_pipeline.run import run
from beam_pipeline.predict import PredictVideoDoFn
from mimamo_ops.model.checkpoints import sha256_file
from tests import clips
from tests.local_servers import BUCKET, free_port, serve
from tests.pipeline.test_cloud_storage import upload
from tests.pipeline.test_pipeline import local_job_service

CLIP_FRAMES = 20


@pytest.fixture(scope="module")
def remote_checkpoint(gcs_emulator, synthetic_weights, tmp_path_factory) -> Iterator[str]:
    """The checkpoint uploaded to the emulator; this process talks to it with its own weights cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
        patch.setenv("MIMAMO_CACHE_DIR", str(tmp_path_factory.mktemp("launcher-cache")))
        use_anonymous_gcs_for_emulator()
        FileSystems.set_options(PipelineOptions([]))
        uri = f"gs://{BUCKET}/worker-pool/{synthetic_weights[0].name}"
        upload(synthetic_weights[0], uri)
        yield uri


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("worker-clips") / "one_face.mp4"
    clips.moving_face_clip(path, n_frames=CLIP_FRAMES)
    return path


def flags(clip_path: Path, output: Path, checkpoint: str, backbone: Path) -> list:
    return ["--input", str(clip_path), "--output", str(output), "--checkpoint", checkpoint, "--backbone",
            str(backbone), "--length", "16", "--stride", "16", "--compute_batch_size", "8"]


def test_the_pipeline_graph_pickles_with_the_weight_uris_not_launcher_paths(remote_checkpoint, clip,
                                                                            synthetic_weights, tmp_path):
    options = PipelineOptions(flags(clip, tmp_path / "out", remote_checkpoint, synthetic_weights[1]))
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, options)
    proto = pipeline.to_runner_api()  # pickles every DoFn, as a job submission does
    finder = FindPredictFns()
    beam.Pipeline.from_runner_api(proto, pipeline.runner, options).visit(finder)
    assert len(finder.found) == 1
    config = pickler.loads(pickler.dumps(finder.found[0]))._model_config  # pylint: disable=protected-access
    assert config.checkpoint_path == remote_checkpoint
    assert config.backbone_path == str(synthetic_weights[1])


class FindPredictFns(PipelineVisitor):
    """Collects the ``PredictVideoDoFn`` instances of a pipeline."""

    def __init__(self):
        self.found = []

    def visit_transform(self, applied_ptransform) -> None:
        dofn = getattr(applied_ptransform.transform, "dofn", None)
        if isinstance(dofn, PredictVideoDoFn):
            self.found.append(dofn)


@contextlib.contextmanager
def worker_pool(environment: dict, log_path: Path) -> Iterator[str]:
    """Beam's worker pool (one fresh SDK worker process per worker) on 127.0.0.1 with ``environment``."""
    port = free_port()
    command = [sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main", f"--service_port={port}"]
    with open(log_path, "wb") as log, serve(command, port, "the worker pool", env=environment, output=log):
        yield f"localhost:{port}"


def test_a_fresh_worker_process_fetches_the_weights_from_their_uri_and_predicts(
        gcs_emulator, remote_checkpoint, clip, synthetic_weights, tmp_path):
    worker_cache = tmp_path / "worker-cache"
    # the pool starts each worker as `python -c ...`: this interpreter must come first on its PATH
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    environment = dict(os.environ, PATH=path, STORAGE_EMULATOR_HOST=gcs_emulator,
                       MIMAMO_CACHE_DIR=str(worker_cache))
    output = tmp_path / "out"
    with worker_pool(environment, tmp_path / "worker_pool.log") as pool, local_job_service() as endpoint:
        run(flags(clip, output, remote_checkpoint, synthetic_weights[1])
            + ["--runner=PortableRunner", f"--job_endpoint={endpoint}", "--environment_type=EXTERNAL",
               f"--environment_config={pool}"])
    fetched = [path for path in (worker_cache / "remote").rglob("*.pth.tar")]
    assert len(fetched) == 1 and sha256_file(fetched[0]) == sha256_file(synthetic_weights[0])
    frames = pq.read_table(output / "frames")
    assert frames.num_rows == CLIP_FRAMES
    assert sorted(frames["frame_index"].to_pylist()) == list(range(CLIP_FRAMES))
    assert np.isfinite(frames["valence"].to_numpy()).all() and np.isfinite(frames["arousal"].to_numpy()).all()
    videos = pq.read_table(output / "videos").to_pylist()
    assert [(row["video_uri"], row["status"]) for row in videos] == [(str(clip), "ok")]
