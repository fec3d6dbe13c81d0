"""``PredictAlignedFaces``: face sequences a user already has (OpenFace's crops, say) -> per-frame valence and
arousal, on Beam's ``RunInference`` with ``MimamoModelHandler``.

A sequence is one face's aligned crops in frame order (``AlignedFace`` rows), keyed by the user's own ``str``
key: a video, a (video, person) pair, a folder of OpenFace output. The model sees the sequence as one track
(snippets of ``length`` frames, the GRU over ``gru_sequence_snippets`` snippets; spec 4.4, 6), exactly as
``mimamo predict-aligned`` does, so no face stage runs. ``read_aligned_face_folder`` turns a folder that
OpenFace wrote into such a sequence.
"""
import dataclasses
import logging
import typing
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, RunInference

from beam_pipeline.config import MODEL_SETTINGS, model_and_face_configs, read_settings
from beam_pipeline.metrics import METRICS_NAMESPACE
from beam_pipeline.model_loading import model_loader
from beam_pipeline.options import worker_processes_per_machine
from beam_pipeline.rows import AlignedFace, FacePrediction, image_array
from mimamo_ops.decoding.aligned_faces import list_aligned_faces, read_aligned_faces
from mimamo_ops.model.predictor import MimamoModel, ModelConfig, predict_face_sequence
from mimamo_ops.runtime.threads import apply_thread_budget

__all__ = ["AlignedPredictionRow", "MimamoModelHandler", "PredictAlignedFaces", "read_aligned_face_folder"]

LOGGER = logging.getLogger(__name__)
MAX_SEQUENCES_PER_BATCH = 4  # sequences are long; a batch only groups them for one model call


class AlignedPredictionRow(typing.NamedTuple):
    """One frame of one keyed sequence with its valence and arousal (``PredictAlignedFaces``)."""

    key: str
    frame_index: np.int64
    timestamp_s: np.float64
    valence: np.float32
    arousal: np.float32


beam.coders.registry.register_coder(AlignedPredictionRow, beam.coders.RowCoder)


def predict_sequence(model: MimamoModel, faces: Iterable[AlignedFace]) -> List[FacePrediction]:
    """Valence and arousal of each face of one sequence, taken in frame order as one track
    (``mimamo_ops.model.predictor.predict_face_sequence``).

    Args:
        model: the loaded networks.
        faces: the sequence's ``AlignedFace`` rows (any order; sorted by ``frame_index``).

    Returns:
        One ``FacePrediction`` per face, in frame order.
    """
    ordered = sorted(faces, key=lambda face: int(face.frame_index))
    crops = ((int(face.frame_index), float(face.timestamp_s), image_array(face)) for face in ordered)
    return [FacePrediction(frame, time_s, valence, arousal)
            for frame, time_s, valence, arousal in predict_face_sequence(model, crops)]


class MimamoModelHandler(ModelHandler[Sequence[AlignedFace], List[FacePrediction], MimamoModel]):
    """Beam ``ModelHandler`` of MIMAMO-Net: one aligned-face sequence in, its per-frame predictions out.

    ``load_model`` gives the process its share of the cores, fetches remote weights into the worker's cache and
    loads both networks (strictly, ``weights_only=True``); ``RunInference`` keeps one model per process
    (``apache_beam.utils.shared``), and with ``backbone_sharing`` ``machine`` (the default on a GPU) the processes
    of a machine share one backbone (``beam_pipeline.model_loading.MachineBackbone``). Settings are the model
    options of ``mimamo run`` by name (``checkpoint``, ``backbone``, ``device``, ``runtime``, ``precision``,
    ``length``, ``stride``, ``gru_sequence_snippets``, ``backbone_sharing``, ...), checked here.
    """

    def __init__(self, **settings):
        super().__init__()
        self._settings = read_settings(settings, MODEL_SETTINGS, "MimamoModelHandler")
        self._config, _ = model_and_face_configs(self._settings, worker_processes=1)
        self._loader = model_loader(self._settings.backbone_sharing, self._config.device)

    def with_worker_processes(self, worker_processes: int) -> "MimamoModelHandler":
        """This handler for ``worker_processes`` pipeline processes per machine (the thread budget)."""
        self._config = dataclasses.replace(self._config, worker_processes=worker_processes)
        return self

    @property
    def model_config(self) -> ModelConfig:
        """The model side's config (weights resolved)."""
        return self._config

    def load_model(self) -> MimamoModel:
        apply_thread_budget(self._config.thread_budget())
        return self._loader(self._config)

    def run_inference(self, batch: Sequence[Sequence[AlignedFace]], model: MimamoModel,
                      inference_args: Optional[Dict[str, Any]] = None) -> Iterator[List[FacePrediction]]:
        for sequence in batch:
            yield predict_sequence(model, sequence)

    def get_num_bytes(self, batch: Sequence[Sequence[AlignedFace]]) -> int:
        return sum(len(face.image) for sequence in batch for face in sequence)

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE

    def batch_elements_kwargs(self) -> Mapping[str, Any]:
        return {"min_batch_size": 1, "max_batch_size": MAX_SEQUENCES_PER_BATCH}


def _rows(keyed: Tuple[str, List[FacePrediction]]) -> Iterator[AlignedPredictionRow]:
    key, predictions = keyed
    for row in predictions:
        yield AlignedPredictionRow(key, row.frame_index, row.timestamp_s, row.valence, row.arousal)


def _check_key(element: Tuple[str, Sequence[AlignedFace]]) -> Tuple[str, List[AlignedFace]]:
    key, faces = element
    if not isinstance(key, str):
        raise TypeError(f"PredictAlignedFaces: keys must be str; got {type(key).__name__} ({key!r})")
    return key, list(faces)


class PredictAlignedFaces(beam.PTransform):
    """``(key, sequence of AlignedFace)`` -> ``AlignedPredictionRow`` per frame: valence and arousal of aligned
    faces a user already has, with no face stage (``RunInference`` with ``MimamoModelHandler``).

    Example (OpenFace output folders, one per video)::

        rows = (p | beam.Create(["openface/talk1", "openface/talk2"])
                  | beam.Map(read_aligned_face_folder)
                  | PredictAlignedFaces(gru_sequence_snippets=64))

    Keyword arguments: the model options of ``mimamo run`` by name (see ``MimamoModelHandler``).
    """

    def __init__(self, **settings):
        super().__init__()
        self._handler = MimamoModelHandler(**settings)

    def expand(self, sequences):
        handler = self._handler.with_worker_processes(worker_processes_per_machine(sequences.pipeline.options))
        return (
            sequences
            | "CheckKeys" >> beam.Map(_check_key)
            | "RunMimamo" >> RunInference(KeyedModelHandler(handler))
            | "ToRows" >> beam.FlatMap(_rows).with_output_types(AlignedPredictionRow)
        )


def read_aligned_face_folder(directory: str, face_id: int = 0) -> Tuple[str, List[AlignedFace]]:
    """Reads the aligned faces OpenFace wrote for one video into a keyed sequence.

    Args:
        directory: OpenFace's output folder (``DIR/*_aligned/frame_det_00_000001.bmp``) or a folder of face
            images whose names end in their frame number; a local path.
        face_id: the face in ``frame_det_<face_id>_<frame>`` names.

    Returns:
        ``(directory, [AlignedFace, ...])`` in frame order; frame numbers as in the file names (OpenFace counts
        from 1), timestamps 0 (OpenFace's folder does not record them).
    """
    faces = [AlignedFace.from_array(frame, 0.0, rgb)
             for frame, rgb in read_aligned_faces(list_aligned_faces(directory, face_id))]
    return directory, faces
