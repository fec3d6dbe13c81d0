"""MIMAMO-Net for Apache Beam: composable transforms with typed rows, the tables, and the entry points.

The transforms a user composes into their own pipeline (each imports Beam and the model only when used)::

    from beam_pipeline import PredictValenceArousal, WriteResultTables

    result = uris | PredictValenceArousal(multi_face=True, smoothing_size=0.5)  # .frames, .videos, .snippets
    faces = uris | ExtractFaces()                                            # aligned crops as rows
    rows = keyed_sequences | PredictAlignedFaces()                           # RunInference on crops you have

Modules of the Beam graph: ``predict`` (``PredictValenceArousal``), ``extract`` (``ExtractFaces``), ``aligned``
(``PredictAlignedFaces``, ``MimamoModelHandler``), ``matching`` (``MatchVideos``, ``DistinctVideoUris``),
``rows`` (the row types: Beam schemas named as the Parquet columns), ``config`` (settings by option name),
``sinks`` (``WriteResultTables``), ``options`` and ``flags`` (``MimamoOptions``), ``inputs`` (files, folders,
globs, lists), ``remote_files`` (remote videos and weights on workers), ``storage`` (whole-or-nothing files on
any file system), ``faults`` (transient or permanent failures, retries), ``commits`` (each video committed under
``_videos/``), ``compaction`` (the tables built from the commits), ``resume``, ``locks`` and ``watch`` (reruns,
one writer per output, watch mode), ``progress_records`` (the workers' progress files), ``beam_compat`` (the few
places that need Beam internals), ``library_warnings`` (libraries' warnings to the log, not the console),
``pipeline`` (``build_pipeline``) and ``run`` (``python -m beam_pipeline.run``).

The command line lives in ``cli`` (``mimamo``: sub-commands, progress bars, reports, the demo); nothing else
imports it. May import ``mimamo_ops`` and Apache Beam. Start reading at ``predict.PredictValenceArousal``.
"""
import importlib
from typing import List

_EXPORTS = {
    "AlignedFace": "beam_pipeline.rows",
    "AlignedPredictionRow": "beam_pipeline.aligned",
    "DistinctVideoUris": "beam_pipeline.matching",
    "ExtractFaces": "beam_pipeline.extract",
    "FaceCropRow": "beam_pipeline.rows",
    "FacePrediction": "beam_pipeline.rows",
    "FacesResult": "beam_pipeline.extract",
    "FrameRow": "beam_pipeline.rows",
    "MatchVideos": "beam_pipeline.matching",
    "MimamoModelHandler": "beam_pipeline.aligned",
    "MimamoOptions": "beam_pipeline.options",
    "PredictAlignedFaces": "beam_pipeline.aligned",
    "PredictValenceArousal": "beam_pipeline.predict",
    "SnippetRow": "beam_pipeline.rows",
    "ValenceArousalResult": "beam_pipeline.predict",
    "VideoRow": "beam_pipeline.rows",
    "WriteResultTables": "beam_pipeline.sinks",
    "build_pipeline": "beam_pipeline.pipeline",
    "read_aligned_face_folder": "beam_pipeline.aligned",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    """The public names, imported on first use: ``import beam_pipeline`` alone stays light (``mimamo --help``)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'beam_pipeline' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(__all__))
