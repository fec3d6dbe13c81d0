"""The settings of the public transforms, by the option names users know from ``mimamo run`` (``checkpoint``,
``multi_face``, ``smoothing_size``, ``face_backend``, ``runtime``, ``length``, ...).

One set of declarations serves both: the flags of ``beam_pipeline.flags`` give each setting its name, default,
type, choices and help; ``read_settings`` checks keyword arguments against them while a transform is built
(``TypeError`` for an unknown name or a wrong type, ``ValueError`` naming the argument for a bad value), and
``model_and_face_configs`` turns them into the configs of ``mimamo_ops``.
"""
import argparse
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

from beam_pipeline.flags import add_mimamo_arguments
from beam_pipeline.options import validate_options
from beam_pipeline.remote_files import resolve_weight_uris
from mimamo_ops.faces.isolation import IsolationConfig
from mimamo_ops.faces.records import FaceConfig
from mimamo_ops.model.predictor import ModelConfig

__all__ = ["FACE_SETTINGS", "MODEL_SETTINGS", "PREDICT_SETTINGS", "face_config_from", "isolation_config_from",
           "model_and_face_configs", "read_settings", "video_disk_budget_bytes"]

# Settings of the face stage, and of the model side; a transform accepts the ones it uses.
FACE_SETTINGS = ("face_backend", "multi_face", "face_size", "mask", "openface_path", "device", "runtime",
                 "threads_per_worker", "max_frame_pixels", "video_memory_budget_mb", "stall_timeout_s",
                 "face_stage_in_process", "video_disk_budget_mb")
MODEL_SETTINGS = ("checkpoint", "backbone", "model_name", "feature_layer", "device", "precision", "runtime",
                  "threads_per_worker", "gru_sequence_snippets", "compute_batch_size", "num_phase", "phase_size",
                  "length", "stride", "height", "nbands", "scale_factor", "backbone_sharing")
PREDICT_SETTINGS = tuple(dict.fromkeys(FACE_SETTINGS + MODEL_SETTINGS + ("smoothing_size", "keep_intermediates",
                                                                         "work_unit_s")))


def _declared_flags() -> Dict[str, argparse.Action]:
    """Setting name (the long flag without ``--``, e.g. ``runtime``) -> its argparse action."""
    parser = argparse.ArgumentParser(add_help=False)
    add_mimamo_arguments(parser)
    flags = {}
    for action in parser._actions:  # pylint: disable=protected-access  # argparse lists no actions publicly
        for option in action.option_strings:
            flags.setdefault(option.lstrip("-"), action)
    return flags


def _check_type(name: str, value: Any, action: argparse.Action) -> None:
    if value is None:
        return
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):  # pylint: disable=protected-access
        expected: Tuple[type, ...] = (bool,)
    elif action.type in (int, float):
        expected = (int,) if action.type is int else (int, float)
    else:
        expected = (str,)
    if isinstance(value, bool) and expected != (bool,) or not isinstance(value, expected):
        names = " or ".join(kind.__name__ for kind in expected)
        raise TypeError(f"{name}={value!r}: expected {names}, got {type(value).__name__}")
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"{name}={value!r}: must be one of {list(action.choices)}")


def read_settings(kwargs: Mapping[str, Any], accepted: Iterable[str], transform: str) -> argparse.Namespace:
    """Checks a transform's keyword arguments and fills in the defaults of the others.

    Args:
        kwargs: what the user passed, by setting name (``runtime``, not the option's dest ``backbone_runtime``).
        accepted: the setting names this transform takes.
        transform: the transform's name, for messages.

    Returns:
        A namespace with every flag of ``beam_pipeline.flags`` by its dest, as ``MimamoOptions`` has them.

    Raises:
        TypeError: an unknown setting, or a value of the wrong type.
        ValueError: a value out of range (the message names the argument and the value).
    """
    accepted = tuple(accepted)
    flags = _declared_flags()
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(f"{transform}() got unexpected keyword argument(s) {unknown}; it takes {sorted(accepted)}")
    parser = argparse.ArgumentParser(add_help=False)
    add_mimamo_arguments(parser)
    settings = parser.parse_args([])
    for name, value in kwargs.items():
        action = flags[name]
        _check_type(name, value, action)
        setattr(settings, action.dest, float(value) if action.type is float and value is not None else value)
    validate_options(settings, require_io=False, prefix="")
    return settings


def face_config_from(settings: argparse.Namespace) -> FaceConfig:
    """The face stage's config from ``read_settings``' namespace (or ``MimamoOptions``)."""
    return FaceConfig(
        backend=settings.face_backend,
        device=settings.device,
        runtime=settings.backbone_runtime,
        multi_face=settings.multi_face,
        face_size=settings.face_size,
        mask=settings.mask,
        openface_path=settings.openface_path,
    )


def isolation_config_from(settings: argparse.Namespace) -> IsolationConfig:
    """How the face stage of each video is guarded: a supervised child process unless ``face_stage_in_process``,
    with the frame-size limit, memory budget and stall timeout of the settings (or ``MimamoOptions``)."""
    return IsolationConfig(
        enabled=not settings.face_stage_in_process,
        max_frame_pixels=settings.max_frame_pixels,
        video_memory_budget_mb=settings.video_memory_budget_mb,
        stall_timeout_s=settings.stall_timeout_s,
    )


def video_disk_budget_bytes(settings: argparse.Namespace) -> Optional[int]:
    """The largest remote video copied to the temp disk, in bytes (``--video_disk_budget_mb``), or None."""
    budget_mb = settings.video_disk_budget_mb
    return None if budget_mb is None else int(budget_mb * (1 << 20))


def model_and_face_configs(settings: argparse.Namespace, worker_processes: int) -> Tuple[ModelConfig, FaceConfig]:
    """Resolves the weight files and turns the settings into the model and face-stage configs.

    Remote weights (``gs://``, ``s3://``) stay URIs in the config (workers fetch them, ``remote_files``); they
    are fetched and verified here first, so a bad file fails while the pipeline is built.

    Args:
        settings: from ``read_settings`` (or ``MimamoOptions``).
        worker_processes: pipeline processes per machine (``options.worker_processes_per_machine``), for the
            thread budget.

    Raises:
        ValueError: a setting is out of range (also from the configs' own checks).
        mimamo_ops.errors.CheckpointError: a weights file is missing, not in the user cache, or not that
            model's weights.
    """
    checkpoint, backbone = resolve_weight_uris(settings.checkpoint, settings.backbone)
    model_config = ModelConfig(
        checkpoint_path=checkpoint,
        backbone_path=backbone,
        device=settings.device,
        backbone_batch_size=settings.compute_batch_size,
        gru_sequence_snippets=settings.gru_sequence_snippets,
        snippet_length=settings.length,
        snippet_stride=settings.stride,
        num_phase=settings.num_phase,
        phase_size=settings.phase_size,
        pyramid_height=settings.height,
        nbands=settings.nbands,
        scale_factor=settings.scale_factor,
        precision=settings.precision,
        runtime=settings.backbone_runtime,
        threads_per_worker=settings.threads_per_worker,
        worker_processes=worker_processes,
    )
    return model_config, face_config_from(settings)
