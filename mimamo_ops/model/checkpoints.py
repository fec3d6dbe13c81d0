"""Safe loading of the two weight files (spec 5): the MIMAMO checkpoint and the ResNet-50 FER+ backbone.

Both files are ``torch.save`` pickles. They are read with ``torch.load(..., weights_only=True)`` only, so a file
whose pickle would run code is refused without running it (spec 10.2, hazard 2). Keys and shapes are checked
strictly against the in-project model definitions, and every problem is reported in one sentence that names the
file, instead of a torch traceback.
"""
import functools
import hashlib
import logging
import os
import pickle
import re
from typing import Dict, Iterable, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from mimamo_ops.errors import CheckpointError
from mimamo_ops.model.backbone import ResNet50FerPlus
from mimamo_ops.model.two_stream import TwoStreamRNN

__all__ = [
    "BACKBONE",
    "MIMAMO",
    "apply_state_dict",
    "check_state_dict",
    "expected_shapes",
    "identify_state_dict",
    "load_backbone_weights",
    "load_mimamo_checkpoint",
    "read_torch_file",
    "sha256_file",
]

logger = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]
StateDict = Dict[str, torch.Tensor]

# The two kinds of weights file, and how messages name them.
MIMAMO = "mimamo"
BACKBONE = "backbone"
DESCRIPTIONS = {MIMAMO: "MIMAMO checkpoint", BACKBONE: "ResNet-50 FER+ backbone"}

_MODULE_PREFIX = "module."  # added by nn.DataParallel when a wrapped model is saved
_NUM_BATCHES_TRACKED = "num_batches_tracked"
_EXAMPLES = 3  # key names quoted in an error message
_HTML_START = (b"<!doctype", b"<html", b"<?xml", b"<head", b"<body")


def sha256_file(path: PathLike, chunk_bytes: int = 1 << 20) -> str:
    """Returns the hex SHA-256 of a file, read in ``chunk_bytes`` pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(chunk_bytes), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _build_model(kind: str) -> nn.Module:
    return ResNet50FerPlus() if kind == BACKBONE else TwoStreamRNN()


@functools.lru_cache(maxsize=None)
def _model_shapes(kind: str) -> Tuple[Tuple[str, Tuple[int, ...]], ...]:
    with torch.device("meta"):
        model = _build_model(kind)
    return tuple((key, tuple(value.shape)) for key, value in model.state_dict().items())


def expected_shapes(kind: str) -> Dict[str, Tuple[int, ...]]:
    """Key -> shape of the state_dict the in-project model expects (built on the meta device, no memory).

    Args:
        kind: ``MIMAMO`` (107 keys, spec 4.2) or ``BACKBONE`` (320 keys, spec 3.3).
    """
    if kind not in DESCRIPTIONS:
        raise ValueError(f"kind must be one of {sorted(DESCRIPTIONS)}; got {kind!r}")
    return dict(_model_shapes(kind))


def identify_state_dict(state_dict: Mapping[str, object]) -> Optional[str]:
    """Says which model a state_dict belongs to, by key overlap.

    Returns:
        ``MIMAMO`` or ``BACKBONE`` when more than half of the keys belong to that model, else None.
    """
    keys = set(state_dict)
    best, best_overlap = None, 0
    for kind in DESCRIPTIONS:
        overlap = len(keys & set(expected_shapes(kind)))
        if overlap > best_overlap:
            best, best_overlap = kind, overlap
    return best if keys and best_overlap * 2 > len(keys) else None


def _sniff(path: str) -> None:
    """Rejects what is plainly not a torch file before unpickling (missing, empty, a directory, an HTML page)."""
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no such file")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: not a regular file")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes); expected a torch.save file")
    with open(path, "rb") as stream:
        head = stream.read(64).lstrip().lower()
    if head.startswith(_HTML_START):
        raise CheckpointError(
            f"{path}: this is an HTML/XML page, not a torch.save file (a failed or blocked download?)"
        )


def _unsafe_detail(error: pickle.UnpicklingError) -> Optional[str]:
    """The 'unsupported global' line of torch's weights_only refusal, or None for other unpickling errors."""
    match = re.search(r"(unsupported GLOBAL[^\n]*|Unsupported global[^\n]*)", str(error), re.IGNORECASE)
    return match.group(1).strip().rstrip(".") if match else None


def read_torch_file(path: PathLike) -> object:
    """Unpickles a ``torch.save`` file (zip or legacy format) with ``weights_only=True`` onto the CPU.

    Args:
        path: the file.

    Returns:
        The saved object: tensors, numbers, strings and plain containers only.

    Raises:
        CheckpointError: the file is missing, empty, truncated, not a torch file, or its pickle would import
            or call anything outside the weights-only allow-list (refused without running it).
    """
    path = os.fspath(path)
    _sniff(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        detail = _unsafe_detail(error)
        if detail is not None:
            raise CheckpointError(
                f"{path}: refused: the pickle wants to run code that is not plain tensor data ({detail}); "
                "only weights are loaded (weights_only=True). Do not load this file with weights_only=False "
                "unless you trust its origin"
            ) from None
        reason = str(error).strip().splitlines()
        detail = next((line.strip() for line in reason if "Unsupported operand" in line), "bad pickle data")
        raise CheckpointError(f"{path}: not a torch.save file ({detail})") from None
    except (EOFError, RuntimeError) as error:
        first_sentence = (str(error).strip() or type(error).__name__).split(". ")[0].rstrip(".")
        raise CheckpointError(f"{path}: truncated or corrupt torch file ({first_sentence})") from None
    except (KeyError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise CheckpointError(f"{path}: not a torch.save file ({type(error).__name__}: {error})") from None
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read ({error.strerror or error})") from None


def _as_state_dict(obj: object, path: str) -> StateDict:
    """Checks that ``obj`` is a str -> Tensor mapping."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a state_dict (a dict of tensors); got {type(obj).__name__}")
    bad = [key for key, value in obj.items() if not isinstance(key, str) or not isinstance(value, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"{path}: expected a state_dict (a dict of tensors); {len(bad)} entries are not tensors, "
            f"e.g. {_quote(map(str, bad))}"
        )
    return dict(obj)


def _strip_module_prefix(state_dict: StateDict) -> StateDict:
    if state_dict and all(key.startswith(_MODULE_PREFIX) for key in state_dict):
        return {key[len(_MODULE_PREFIX) :]: value for key, value in state_dict.items()}
    return state_dict


def _quote(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(repr(key) for key in keys[:_EXAMPLES])
    return shown + (", ..." if len(keys) > _EXAMPLES else "")


def _raise_on_mismatch(
    expected: Mapping[str, Tuple[int, ...]],
    state_dict: Mapping[str, torch.Tensor],
    path: PathLike,
    what: str,
    kind: Optional[str] = None,
) -> None:
    """Raises a one-sentence CheckpointError when keys or shapes of ``state_dict`` differ from ``expected``."""
    missing = set(expected) - set(state_dict)
    unexpected = set(state_dict) - set(expected)
    if missing or unexpected:
        other = identify_state_dict(state_dict) if kind is not None else None
        if other is not None and other != kind:
            counts = f"{len(unexpected)} unexpected keys, {len(missing)} missing keys"
            article = "the" if other == BACKBONE else "a"
            raise CheckpointError(f"{path}: this looks like {article} {DESCRIPTIONS[other]}, not {what}: {counts}")
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_quote(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_quote(unexpected)})")
        raise CheckpointError(f"{path}: does not fit {what}: " + "; ".join(parts))
    wrong = [key for key in sorted(expected) if tuple(state_dict[key].shape) != tuple(expected[key])]
    if wrong:
        details = "; ".join(
            f"{key!r} expected {tuple(expected[key])} got {tuple(state_dict[key].shape)}" for key in wrong[:_EXAMPLES]
        )
        more = f" (and {len(wrong) - _EXAMPLES} more)" if len(wrong) > _EXAMPLES else ""
        raise CheckpointError(f"{path}: {len(wrong)} tensors do not fit {what} (wrong shape): {details}{more}")


def check_state_dict(state_dict: Mapping[str, torch.Tensor], kind: str, path: PathLike) -> None:
    """Strict key and shape check against the in-project model, with one-sentence errors.

    Args:
        state_dict: key -> tensor, as loaded.
        kind: ``MIMAMO`` or ``BACKBONE``, what the file should be.
        path: the file the tensors came from, for the message.

    Raises:
        CheckpointError: keys are missing or unexpected (the message recognises the other weights file), or
            shapes differ (key, expected and found shape).
    """
    what = ("a " if kind == MIMAMO else "the ") + DESCRIPTIONS[kind]
    _raise_on_mismatch(expected_shapes(kind), state_dict, path, what, kind)


def load_mimamo_checkpoint(path: PathLike) -> Tuple[StateDict, Optional[int]]:
    """Loads ``model_weights.pth.tar`` (spec 5.1) safely and checks it against ``TwoStreamRNN``.

    Accepts the official ``{'state_dict': ..., 'epoch': int}`` dict in either serialisation (zip or legacy),
    a bare state_dict, and keys with a ``module.`` prefix (stripped).

    Args:
        path: the checkpoint file.

    Returns:
        (state_dict, epoch): the 107 tensors on the CPU, and the saved epoch or None when absent.

    Raises:
        CheckpointError: unreadable, unsafe, or not a MIMAMO checkpoint (message says what it is instead).
    """
    path = os.fspath(path)
    obj = read_torch_file(path)
    epoch: Optional[int] = None
    if isinstance(obj, Mapping) and "state_dict" in obj:
        raw_epoch = obj.get("epoch")
        epoch = int(raw_epoch) if isinstance(raw_epoch, (int, torch.Tensor)) else None
        obj = obj["state_dict"]
    state_dict = _strip_module_prefix(_as_state_dict(obj, path))
    check_state_dict(state_dict, MIMAMO, path)
    logger.debug("%s: MIMAMO checkpoint, %d tensors, epoch %s", path, len(state_dict), epoch)
    return state_dict, epoch


def load_backbone_weights(path: PathLike) -> StateDict:
    """Loads ``resnet50_ferplus_dag.pth`` (a plain state_dict, spec 5.2) safely and checks it.

    ``num_batches_tracked`` entries that the file lacks (older PyTorch exports) are filled with int64 zeros, so
    strict loading works; they do not affect eval-mode results.

    Args:
        path: the weights file.

    Returns:
        The 320 tensors on the CPU, keyed as ``ResNet50FerPlus``.

    Raises:
        CheckpointError: unreadable, unsafe, or not the backbone (message says what it is instead).
    """
    path = os.fspath(path)
    obj = read_torch_file(path)
    if isinstance(obj, Mapping) and "state_dict" in obj:
        # A training-style wrapper: the only such file in this project is the MIMAMO checkpoint.
        obj = obj["state_dict"]
    state_dict = _strip_module_prefix(_as_state_dict(obj, path))
    for key in expected_shapes(BACKBONE):
        bn_prefix = key[: -len(_NUM_BATCHES_TRACKED)]
        if key.endswith(_NUM_BATCHES_TRACKED) and key not in state_dict and f"{bn_prefix}running_mean" in state_dict:
            state_dict[key] = torch.zeros((), dtype=torch.int64)
    check_state_dict(state_dict, BACKBONE, path)
    logger.debug("%s: ResNet-50 FER+ backbone, %d tensors", path, len(state_dict))
    return state_dict


def apply_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], path: PathLike, what: str,
                     assign: bool = False) -> None:
    """Loads ``state_dict`` into ``model`` strictly, with one-sentence errors instead of torch's.

    Args:
        model: the target module (any device; tensors are copied over). With ``assign``, a module built on the
            ``meta`` device (no memory, no random init) that takes ``state_dict``'s tensors themselves.
        state_dict: key -> tensor.
        path: where the tensors came from, for messages.
        what: a name for the model in messages, e.g. "ResNet-50 FER+ backbone".
        assign: pass ``assign=True`` to ``load_state_dict`` (no copy).

    Raises:
        CheckpointError: missing/unexpected keys or shape mismatches.
    """
    target = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    _raise_on_mismatch(target, state_dict, path, f"the {what}")
    model.load_state_dict(state_dict, strict=True, assign=assign)
