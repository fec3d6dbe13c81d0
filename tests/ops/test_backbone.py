"""ResNet-50 FER+ backbone: official key layout, exact preprocessing, parity case 4 (spec 3)."""
import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from mimamo_ops.errors import CheckpointError
from mimamo_ops.model.backbone import (FEATURE_DIM, MEAN_RGB, ResNet50FerPlus, normalise_faces, preprocess_faces,
                                      resize_faces)
from mimamo_ops.model.backbone_runner import BackboneRunner, state_dict_sha256, tune_allocator
from mimamo_ops.runtime import openvino_models
from mimamo_ops.runtime.selection import resolve_runtime
from tests.ops.expected import load_expected
from tests.parity_recipes import gen_state_dict

# parity README section 4: float32 vs float64 differ by <= 2.9e-4 on features up to ~850.
FEATURE_ATOL = 2e-3
CASE4_WEIGHTS_SHA256 = "66859e0d0f9f29790c29751e42454291c45df54023b2636217ca56cfd858ba86"
OFFERED_RUNTIMES = ("torch", "openvino")  # every runtime the project offers besides "auto"


@pytest.fixture(scope="module")
def case4():
    return load_expected("case4_resnet_expected.npz")


@pytest.fixture(scope="module")
def seeded_state_dict():
    with torch.device("meta"):
        template = ResNet50FerPlus().state_dict()
    return gen_state_dict(template, 4004)


@pytest.fixture(scope="module")
def runner(seeded_state_dict):
    return BackboneRunner(seeded_state_dict, batch_size=2, runtime="torch")


@pytest.fixture(scope="module", params=OFFERED_RUNTIMES)
def any_runner(request, seeded_state_dict):
    return BackboneRunner(seeded_state_dict, batch_size=2, runtime=request.param)


def _le_bytes(tensor: torch.Tensor) -> bytes:
    array = tensor.numpy()
    return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()


def test_state_dict_keys_are_the_official_ones(case4):
    state_dict = ResNet50FerPlus().state_dict()
    assert sorted(state_dict) == list(case4["param_keys"])
    assert len(state_dict) == 320
    assert sum(p.numel() for p in ResNet50FerPlus().parameters()) == 23_524_424
    assert sum(t.numel() for t in state_dict.values()) == 23_577_597
    assert state_dict["conv1_7x7_s2.weight"].shape == (64, 3, 7, 7)
    assert state_dict["conv2_1_1x1_reduce_bn.running_mean"].shape == (64,)
    assert state_dict["conv3_1_1x1_proj.weight"].shape == (512, 256, 1, 1)
    assert state_dict["conv5_3_1x1_increase_bn.running_var"].shape == (2048,)
    assert state_dict["classifier.weight"].shape == (8, 2048, 1, 1)
    assert state_dict["conv4_6_1x1_increase_bn.num_batches_tracked"].dtype == torch.int64


def test_seeded_weights_reproduce_reference_hashes(case4, seeded_state_dict):
    # Per-key hashes pin every shape and draw order; the total is the parity README's.
    per_key = {key: hashlib.sha256(_le_bytes(seeded_state_dict[key])).hexdigest() for key in case4["param_keys"]}
    mismatched = [key for key, digest in zip(case4["param_keys"], case4["param_sha256"]) if per_key[key] != digest]
    assert mismatched == []
    total = hashlib.sha256(b"".join(_le_bytes(seeded_state_dict[key]) for key in sorted(seeded_state_dict)))
    assert total.hexdigest() == CASE4_WEIGHTS_SHA256


def test_preprocess_is_pil_bilinear_256_center_crop_minus_mean_exactly(case4):
    crops = case4["crops_u8"]
    x = preprocess_faces(crops)
    assert x.shape == (2, 3, 224, 224) and x.dtype == np.float32 and x.flags.c_contiguous
    for i, crop in enumerate(crops):
        resized = np.asarray(Image.fromarray(crop).resize((256, 256), Image.BILINEAR).crop((16, 16, 240, 240)))
        expected = resized.astype(np.float32) - np.asarray(MEAN_RGB, dtype=np.float32)
        np.testing.assert_array_equal(x[i], expected.transpose(2, 0, 1))


def test_preprocess_of_flat_colour_is_colour_minus_mean():
    faces = np.empty((1, 112, 112, 3), dtype=np.uint8)
    faces[...] = (200, 100, 0)
    x = preprocess_faces(faces)
    for channel, value in enumerate((200, 100, 0)):
        assert np.all(x[0, channel] == np.float32(value) - np.float32(MEAN_RGB[channel]))


def test_preprocess_resizes_shorter_side_of_non_square_input():
    rng = np.random.default_rng(7)
    face = rng.integers(0, 256, size=(100, 150, 3), dtype=np.uint8)
    x = preprocess_faces(face[None])
    # Resize(256) keeps the aspect ratio: 150x100 -> 384x256, centre crop at left 80, top 16.
    resized = np.asarray(Image.fromarray(face).resize((384, 256), Image.BILINEAR).crop((80, 16, 304, 240)))
    np.testing.assert_array_equal(x[0], (resized.astype(np.float32) - np.float32(MEAN_RGB)).transpose(2, 0, 1))


def test_preprocess_rejects_wrong_dtype_and_shape():
    with pytest.raises(TypeError, match="uint8.*float32"):
        preprocess_faces(np.zeros((1, 112, 112, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"got shape \(112, 112, 3\)"):
        preprocess_faces(np.zeros((112, 112, 3), dtype=np.uint8))


def test_features_of_every_runtime_match_parity_case4(case4, any_runner):
    features = any_runner.features(case4["crops_u8"])
    assert features.shape == (2, FEATURE_DIM) and features.dtype == np.float32
    np.testing.assert_allclose(features, case4["features"], rtol=0, atol=FEATURE_ATOL)


def test_every_runtime_agrees_with_torch_on_a_batch_larger_than_the_compute_batch(case4, any_runner, runner):
    crops = np.concatenate([case4["crops_u8"], case4["crops_u8"][:, ::-1], case4["crops_u8"][:, :, ::-1]])
    x = preprocess_faces(np.ascontiguousarray(crops))
    expected = runner.features_from_input(x)
    got = any_runner.features_from_input(x)
    assert got.shape == (6, FEATURE_DIM)
    np.testing.assert_allclose(got, expected, rtol=0, atol=FEATURE_ATOL)


def test_auto_runtime_is_openvino_on_cpu_and_torch_on_cuda():
    assert resolve_runtime("auto", "cpu") == "openvino"
    assert resolve_runtime("auto", "cuda:0") == "torch"
    assert resolve_runtime("torch", "cpu") == "torch"
    with pytest.raises(ValueError, match="CPU only; got device cuda:0"):
        resolve_runtime("openvino", "cuda:0")
    with pytest.raises(ValueError, match="runtime must be one of.*'onnx'"):
        resolve_runtime("onnx", "cpu")


def test_openvino_model_is_converted_once_and_rebuilt_when_stale(tmp_path, seeded_state_dict, case4):
    sha = state_dict_sha256(seeded_state_dict)
    first = BackboneRunner(seeded_state_dict, runtime="openvino", cache_dir=tmp_path, weights_sha256=sha)
    first_features = first.features(case4["crops_u8"])
    del first  # OpenVINO maps model.bin; the truncation below must not pull it from under a live model
    entries = [p for p in tmp_path.iterdir() if p.name.startswith("resnet50_ferplus-")]
    assert [p.name[:33] for p in entries] == [f"resnet50_ferplus-{sha[:16]}"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    key_file = entries[0] / "key.json"
    stamp = key_file.stat().st_mtime_ns
    BackboneRunner(seeded_state_dict, runtime="openvino", cache_dir=tmp_path, weights_sha256=sha)
    assert key_file.stat().st_mtime_ns == stamp  # reused, not converted again

    (entries[0] / "model.bin").write_bytes(b"truncated")
    rebuilt = BackboneRunner(seeded_state_dict, runtime="openvino", cache_dir=tmp_path, weights_sha256=sha)
    assert (entries[0] / "model.bin").stat().st_size > 80 * 2**20  # 23.5 M float32 weights
    np.testing.assert_array_equal(rebuilt.features(case4["crops_u8"]), first_features)


def test_openvino_cache_key_names_the_weights_and_the_runtime_version():
    import openvino

    key = openvino_models.cache_entry_key("resnet50_ferplus", "ab" * 32, (-1, 3, 224, 224))
    assert key["weights_sha256"] == "ab" * 32 and key["runtime_version"] == openvino.get_version()
    assert key != openvino_models.cache_entry_key("resnet50_ferplus", "cd" * 32, (-1, 3, 224, 224))
    assert key != openvino_models.cache_entry_key("mtcnn_onet", "ab" * 32, (-1, 3, 224, 224))


def test_batch_listeners_hear_every_forward_pass(seeded_state_dict, case4):
    heard = []
    fast = BackboneRunner(seeded_state_dict, batch_size=1, runtime="openvino")
    fast.add_batch_listener(heard.append)
    fast.features(case4["crops_u8"])
    assert len(heard) == 2 and all(seconds > 0 for seconds in heard)


def test_channels_first_batch_one_also_matches_parity_case4(case4, seeded_state_dict):
    plain = BackboneRunner(seeded_state_dict, batch_size=1, channels_last=False, tune_memory=False, runtime="torch")
    np.testing.assert_allclose(plain.features(case4["crops_u8"]), case4["features"], rtol=0, atol=FEATURE_ATOL)


@pytest.mark.parametrize("runtime", OFFERED_RUNTIMES)
def test_bf16_features_stay_within_two_percent_of_range(case4, seeded_state_dict, runtime):
    fast = BackboneRunner(seeded_state_dict, precision="bf16", runtime=runtime)
    features = fast.features(case4["crops_u8"])
    assert features.dtype == np.float32
    reference = case4["features"]
    assert np.abs(features - reference).max() < 0.02 * np.abs(reference).max()


def test_forward_head_gives_eight_logits(seeded_state_dict):
    model = ResNet50FerPlus().eval()
    model.load_state_dict(seeded_state_dict)
    with torch.inference_mode():
        logits = model.forward_head(torch.ones(3, FEATURE_DIM))
    assert logits.shape == (3, 8)
    torch.testing.assert_close(logits[0], model.classifier.weight.sum(dim=(1, 2, 3)) + model.classifier.bias)


@pytest.mark.parametrize("channels_last", [True, False])
def test_resized_faces_normalised_on_the_device_give_the_bits_of_the_host_s_preprocessing(
        case4, seeded_state_dict, channels_last):
    """The torch runtime takes 8-bit resized crops and subtracts the mean on the device (what ``features`` and a
    shared backbone use): the same float32 inputs, so the same features bit for bit; OpenVINO normalises on the
    host."""
    crops = case4["crops_u8"]
    resized = resize_faces(crops)
    assert resized.dtype == np.uint8 and resized.shape == (len(crops), 224, 224, 3)
    np.testing.assert_array_equal(normalise_faces(resized), preprocess_faces(crops))
    for runtime in OFFERED_RUNTIMES:
        runner = BackboneRunner(seeded_state_dict, batch_size=2, channels_last=channels_last, tune_memory=False,
                                runtime=runtime)
        np.testing.assert_array_equal(runner.features_from_resized(resized),
                                      runner.features_from_input(preprocess_faces(crops)), err_msg=runtime)


def test_empty_batch_gives_empty_features(runner):
    assert runner.features(np.zeros((0, 112, 112, 3), dtype=np.uint8)).shape == (0, FEATURE_DIM)


def test_runner_rejects_bad_settings_and_weights(seeded_state_dict):
    with pytest.raises(ValueError, match="precision.*'fp16'"):
        BackboneRunner(seeded_state_dict, precision="fp16")
    with pytest.raises(ValueError, match="batch_size.*0"):
        BackboneRunner(seeded_state_dict, batch_size=0)
    partial = {key: value for key, value in seeded_state_dict.items() if not key.startswith("classifier")}
    with pytest.raises(CheckpointError, match="2 missing keys"):
        BackboneRunner(partial)


def test_runner_from_file_loads_weights_only(tmp_path, seeded_state_dict):
    path = tmp_path / "resnet50_ferplus_dag.pth"
    torch.save(seeded_state_dict, path, _use_new_zipfile_serialization=False)
    loaded = BackboneRunner.from_file(path, tune_memory=False, runtime="torch")
    torch.testing.assert_close(loaded.model.classifier.bias, seeded_state_dict["classifier.bias"])


def test_tune_allocator_answers_the_same_every_call():
    first = tune_allocator()
    assert isinstance(first, bool)
    assert tune_allocator() is first


def test_automatic_batch_size_is_16_on_cpu_and_follows_free_gpu_memory():
    from mimamo_ops.model.backbone_runner import choose_batch_size

    assert choose_batch_size("cpu") == 16
    assert choose_batch_size("cuda:0", free_bytes=80 * 2**30) == 512  # capped
    assert choose_batch_size("cuda:0", free_bytes=16 * 2**30) == 128  # half of 16 GiB at 64 MiB per face
    assert choose_batch_size("cuda:0", free_bytes=1 * 2**30) == 32  # never below GPU_MIN_BATCH_SIZE


def test_processes_sharing_a_gpu_split_its_free_memory_between_their_automatic_batches():
    from mimamo_ops.model.backbone_runner import GPU_BYTES_PER_FACE, choose_batch_size
    from mimamo_ops.model.predictor import ModelConfig

    assert choose_batch_size("cuda:0", free_bytes=16 * 2**30, processes=4) == 32  # 2 GiB each at 64 MiB per face
    for processes in (1, 2, 4, 8, 16):  # together they stay within half of a 16 GiB GPU
        batch = choose_batch_size("cuda:0", free_bytes=16 * 2**30, processes=processes)
        assert processes * batch * GPU_BYTES_PER_FACE <= 8 * 2**30
    assert choose_batch_size("cuda:0", free_bytes=16 * 2**30, processes=16) == 8
    assert choose_batch_size("cuda:0", free_bytes=2**28, processes=64) == 1
    assert choose_batch_size("cpu", processes=8) == 16
    with pytest.raises(ValueError, match="processes must be >= 1"):
        choose_batch_size("cuda:0", free_bytes=2**30, processes=0)
    assert ModelConfig("c", "b", worker_processes=3).processes_per_machine() == 3
    assert ModelConfig("c", "b", worker_processes=0).processes_per_machine() >= 1  # one per usable CPU


def test_openvino_conversion_reports_nothing():
    """OpenVINO's converter would send usage events (and write ~/intel) through openvino-telemetry; ours gets
    its no-op stub instead. A fresh interpreter, so no earlier import in this session decides it."""
    program = ("from mimamo_ops.runtime.openvino_models import _openvino\n_openvino()\n"
               "import openvino.tools.ovc.convert_impl as convert_impl\nprint(convert_impl.tm.__name__)\n")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300, check=True)
    assert done.stdout.strip() == "openvino.tools.ovc.telemetry_stub"
