"""The result tables under an output folder, as sharded Parquet that DuckDB, BigQuery and Spark read directly.

* ``frames/``: one ``FrameRow`` per (video, face, frame with a face).
* ``videos/``: one ``VideoRow`` per input video, failures included. ``frame_count`` counts the frames that
  decoded; ``frames_undecodable`` the frame slots of a damaged video that did not (null when the face stage decodes
  on its own, as OpenFace does), with a one-line ``warning`` when it is not 0 (``mimamo_ops.decoding.video``).
* ``snippets/`` (``keep_intermediates`` only): one ``SnippetRow`` per (video, face, snippet, frame).

Columns are the row types' fields (``beam_pipeline.rows``): flat scalars with types warehouses load directly.
The run's metadata (package version, weights and their SHA-256s, settings, options) goes into each file's
key-value metadata. Files are ``<table>/part-SSSSS-of-NNNNN.parquet``, zstd-compressed.
"""
from typing import Mapping, Optional

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from beam_pipeline.options import options_as_json
from beam_pipeline.rows import FrameRow, SnippetRow, VideoRow, arrow_schema, row_to_dict

__all__ = [
    "FRAMES_DIR",
    "FRAMES_SCHEMA",
    "SNIPPETS_DIR",
    "SNIPPETS_SCHEMA",
    "TABLES",
    "VIDEOS_DIR",
    "VIDEOS_SCHEMA",
    "WriteResultTables",
    "WriteRowsToParquet",
]

FRAMES_DIR = "frames"
VIDEOS_DIR = "videos"
SNIPPETS_DIR = "snippets"
TABLES = (FRAMES_DIR, VIDEOS_DIR, SNIPPETS_DIR)
FRAMES_SCHEMA = arrow_schema(FrameRow)
VIDEOS_SCHEMA = arrow_schema(VideoRow)
SNIPPETS_SCHEMA = arrow_schema(SnippetRow)


class WriteRowsToParquet(beam.PTransform):
    """Typed rows -> sharded Parquet under ``directory`` (``part-SSSSS-of-NNNNN.parquet``, zstd), with the row
    type's columns and ``metadata`` in each file's footer; rows are buffered into row groups.

    Args:
        directory: the table's folder (local, ``gs://``, ``s3://``).
        row_type: the rows' NamedTuple type (``beam_pipeline.rows``).
        metadata: key-value metadata for the footer.
        num_shards: files per table; 0 lets the runner decide.
    """

    def __init__(self, directory: str, row_type, metadata: Optional[Mapping[str, str]] = None, num_shards: int = 0):
        super().__init__()
        self._directory = directory
        self._schema = arrow_schema(row_type, metadata)
        self._num_shards = num_shards

    def expand(self, rows):
        return (
            rows
            | "ToColumns" >> beam.Map(row_to_dict)
            | "WriteParquet" >> beam.io.WriteToParquet(
                FileSystems.join(self._directory, "part"), schema=self._schema, codec="zstd",
                file_name_suffix=".parquet", num_shards=self._num_shards)
        )


class WriteResultTables(beam.PTransform):
    """A ``ValenceArousalResult`` (``PredictValenceArousal``) -> the ``frames/``, ``videos/`` (and ``snippets/``)
    tables under ``output``.

    Example::

        predict = PredictValenceArousal(multi_face=True)
        result = uris | predict
        result | WriteResultTables("gs://bucket/results", metadata=predict.run_metadata())

    Args:
        output: the output folder (local, ``gs://``, ``s3://``).
        metadata: key-value metadata for every file (``PredictValenceArousal.run_metadata()``); the pipeline's
            options are added as ``mimamo.options`` (credentials left out, ``options.options_as_json``).
        num_shards: files per table; 0 lets the runner decide.
        snippets: also write ``snippets/`` (the result's ``.snippets``, filled with ``keep_intermediates=True``).
    """

    def __init__(self, output: str, metadata: Optional[Mapping[str, str]] = None, num_shards: int = 0,
                 snippets: bool = False):
        super().__init__()
        self._output = output
        self._metadata = dict(metadata or {})
        self._num_shards = num_shards
        self._snippets = snippets

    def expand(self, result):
        metadata = {**self._metadata, "mimamo.options": options_as_json(result.frames.pipeline.options)}
        tables = [("WriteFrames", result.frames, FRAMES_DIR, FrameRow),
                  ("WriteVideos", result.videos, VIDEOS_DIR, VideoRow)]
        if self._snippets:
            tables.append(("WriteSnippets", result.snippets, SNIPPETS_DIR, SnippetRow))
        return {
            table: rows | label >> WriteRowsToParquet(FileSystems.join(self._output, table), row_type, metadata,
                                                      self._num_shards)
            for label, rows, table, row_type in tables
        }
