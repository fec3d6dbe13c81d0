"""Safe, strict loading of the MIMAMO checkpoint and the ResNet-50 FER+ weights (spec 5, 10.2)."""
import hashlib
import os
import re

import numpy as np
import pytest
import torch

from mimamo_ops.errors import CheckpointError
from mimamo_ops.model.backbone import ResNet50FerPlus
from mimamo_ops.model.checkpoints import (
    BACKBONE,
    MIMAMO,
    apply_state_dict,
    expected_shapes,
    load_backbone_weights,
    load_mimamo_checkpoint,
    sha256_file,
)
from mimamo_ops.model.two_stream import TwoStreamRNN
from tests.http_fixtures import backbone_tensors, write_backbone_weights, write_mimamo_checkpoint


class _RunsShellCommand:
    """An object whose unpickling would run a shell command that creates ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def mimamo_file(tmp_path_factory):
    return write_mimamo_checkpoint(tmp_path_factory.mktemp("ckpt") / "model_weights.pth.tar", legacy=True)


@pytest.fixture(scope="module")
def backbone_file(tmp_path_factory):
    return write_backbone_weights(tmp_path_factory.mktemp("ckpt") / "resnet50_ferplus_dag.pth", legacy=True)


def test_expected_shapes_match_spec_totals():
    mimamo = expected_shapes(MIMAMO)
    backbone = expected_shapes(BACKBONE)
    assert len(mimamo) == 107
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    assert sum(int(np.prod(shape)) for key, shape in mimamo.items() if not key.endswith(buffers)) == 2_636_425
    assert len(backbone) == 320
    assert mimamo["rnns.weight_ih_l1_reverse"] == (384, 256)
    assert backbone["conv3_1_1x1_proj.weight"] == (512, 256, 1, 1)


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_mimamo_checkpoint_loads_from_both_serialisations(tmp_path, legacy):
    path = write_mimamo_checkpoint(tmp_path / "m.pth.tar", legacy=legacy, epoch=21)
    state_dict, epoch = load_mimamo_checkpoint(path)
    assert epoch == 21
    assert set(state_dict) == set(expected_shapes(MIMAMO))
    model = TwoStreamRNN()
    apply_state_dict(model, state_dict, path, "MIMAMO network")
    torch.testing.assert_close(model.state_dict()["classifier.1.bias"], torch.tensor([-0.04598058, 0.00383129]))


def test_module_prefix_is_stripped(tmp_path):
    path = write_mimamo_checkpoint(tmp_path / "dp.pth.tar", prefix="module.")
    state_dict, _ = load_mimamo_checkpoint(path)
    assert set(state_dict) == set(expected_shapes(MIMAMO))


def test_bare_state_dict_is_accepted_without_epoch(tmp_path, mimamo_file):
    state_dict, _ = load_mimamo_checkpoint(mimamo_file)
    path = tmp_path / "bare.pth"
    torch.save(state_dict, path)
    loaded, epoch = load_mimamo_checkpoint(path)
    assert epoch is None
    assert all(torch.equal(loaded[key], state_dict[key]) for key in state_dict)


def test_backbone_without_num_batches_tracked_is_completed(backbone_file):
    state_dict = load_backbone_weights(backbone_file)
    assert len(state_dict) == 320
    assert state_dict["conv1_7x7_s2_bn.num_batches_tracked"].dtype == torch.int64
    apply_state_dict(ResNet50FerPlus(), state_dict, backbone_file, "ResNet-50 FER+ backbone")


def test_backbone_zip_with_num_batches_tracked_loads(tmp_path):
    path = write_backbone_weights(tmp_path / "b.pth", legacy=False, num_batches_tracked=True)
    assert len(load_backbone_weights(path)) == 320


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
@pytest.mark.parametrize("loader", [load_mimamo_checkpoint, load_backbone_weights], ids=["mimamo", "backbone"])
def test_pickle_that_runs_code_is_refused_without_running(tmp_path, legacy, loader):
    marker = tmp_path / "code_ran"
    path = tmp_path / "evil.pth"
    payload = {"epoch": 1, "state_dict": {"x": torch.zeros(2)}, "hook": _RunsShellCommand(str(marker))}
    torch.save(payload, path, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + r": refused: .*system"):
        loader(path)
    assert not marker.exists()


def test_backbone_given_as_mimamo_checkpoint_is_recognised(tmp_path):
    path = write_backbone_weights(tmp_path / "resnet50_ferplus_dag.pth", num_batches_tracked=True)
    with pytest.raises(
        CheckpointError,
        match="this looks like the ResNet-50 FER\\+ backbone, not a MIMAMO checkpoint: 320 unexpected keys",
    ):
        load_mimamo_checkpoint(path)


def test_mimamo_checkpoint_given_as_backbone_is_recognised(mimamo_file):
    with pytest.raises(
        CheckpointError,
        match="this looks like a MIMAMO checkpoint, not the ResNet-50 FER\\+ backbone: 107 unexpected keys",
    ):
        load_backbone_weights(mimamo_file)


def test_missing_and_unexpected_keys_are_counted_and_named(tmp_path, mimamo_file):
    state_dict, _ = load_mimamo_checkpoint(mimamo_file)
    del state_dict["classifier.1.bias"]
    state_dict["extra.weight"] = torch.zeros(1)
    path = tmp_path / "edited.pth"
    torch.save({"epoch": 1, "state_dict": state_dict}, path)
    with pytest.raises(CheckpointError) as info:
        load_mimamo_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: does not fit a MIMAMO checkpoint")
    assert "1 missing keys ('classifier.1.bias')" in message
    assert "1 unexpected keys ('extra.weight')" in message


def test_shape_mismatch_names_key_expected_and_found(tmp_path):
    tensors = backbone_tensors()
    tensors["classifier.weight"] = torch.zeros(7, 2048, 1, 1)
    path = tmp_path / "seven_classes.pth"
    torch.save(tensors, path)
    with pytest.raises(CheckpointError, match=r"'classifier.weight' expected \(8, 2048, 1, 1\) got \(7, 2048, 1, 1\)"):
        load_backbone_weights(path)


def test_not_a_state_dict_is_reported(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(CheckpointError, match="expected a state_dict .*got list"):
        load_backbone_weights(path)


@pytest.mark.parametrize(
    "content, reason",
    [
        (None, "no such file"),
        (b"", "empty"),
        (b"this is a text file, not weights\n" * 8, "not a torch.save file"),
        (b"<!DOCTYPE html><html><title>Sign in</title></html>", "HTML"),
    ],
    ids=["missing", "empty", "text", "html"],
)
def test_unreadable_file_errors_name_the_file(tmp_path, content, reason):
    path = tmp_path / "weights.pth"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + ": .*" + reason):
        load_mimamo_checkpoint(path)


def test_directory_is_not_a_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_backbone_weights(tmp_path)


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
@pytest.mark.parametrize("keep", [0.5, 0.01])
def test_truncated_file_is_reported(tmp_path, mimamo_file, legacy, keep):
    source = write_mimamo_checkpoint(tmp_path / "full.pth.tar", legacy=legacy)
    data = source.read_bytes()
    path = tmp_path / "cut.pth.tar"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CheckpointError, match=re.escape(str(path)) + ": truncated or corrupt"):
        load_mimamo_checkpoint(path)


def test_sha256_file_matches_hashlib(mimamo_file):
    assert sha256_file(mimamo_file, chunk_bytes=4096) == hashlib.sha256(mimamo_file.read_bytes()).hexdigest()


def test_apply_state_dict_rejects_wrong_shapes_in_one_sentence():
    model = ResNet50FerPlus()
    state_dict = dict(model.state_dict())
    state_dict["conv1_7x7_s2.weight"] = torch.zeros(64, 3, 5, 5)
    with pytest.raises(CheckpointError, match=r"^w.pth: 1 tensors do not fit the backbone .*'conv1_7x7_s2.weight'"):
        apply_state_dict(model, state_dict, "w.pth", "backbone")
