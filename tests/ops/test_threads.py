"""Each worker process's share of the cores (mimamo_ops.runtime.threads) and the CPU's bf16 units (cpu_features)."""
import os

import cv2
import pytest
import torch

from mimamo_ops.model.predictor import ModelConfig
from mimamo_ops.runtime import threads
from mimamo_ops.runtime.cpu_features import bf16_units
from mimamo_ops.runtime.threads import apply_thread_budget, decoder_threads, threads_per_worker, usable_cpus


@pytest.fixture
def restore_threads(monkeypatch):
    """Puts torch's and OpenCV's thread counts back; monkeypatch restores the environment and the decoder share."""
    before = torch.get_num_threads(), cv2.getNumThreads()
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
    monkeypatch.setattr(threads, "_decoder_threads", decoder_threads())
    yield
    torch.set_num_threads(before[0])
    cv2.setNumThreads(before[1])


def test_usable_cpus_is_the_affinity_mask_capped_by_a_cgroup_v2_quota(tmp_path):
    affinity = len(os.sched_getaffinity(0))
    assert usable_cpus(tmp_path) == affinity  # no cgroup files: the mask alone
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cpus(tmp_path) == affinity
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs of quota
    assert usable_cpus(tmp_path) == min(affinity, 1)


def test_usable_cpus_reads_a_cgroup_v1_quota_and_is_never_zero(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")  # half a CPU
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cpus(tmp_path) == 1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # no quota
    assert usable_cpus(tmp_path) == len(os.sched_getaffinity(0))


def test_threads_per_worker_divides_the_cpus_and_keeps_one():
    assert threads_per_worker(1, cpus=16) == 16
    assert threads_per_worker(2, cpus=16) == 8
    assert threads_per_worker(3, cpus=16) == 5
    assert threads_per_worker(4, cpus=2) == 1
    with pytest.raises(ValueError, match="worker_processes must be >= 1; got 0"):
        threads_per_worker(0, cpus=4)


def test_apply_thread_budget_sets_every_library(restore_threads):
    apply_thread_budget(1)
    assert torch.get_num_threads() == 1
    assert cv2.getNumThreads() == 1
    assert os.environ["OMP_NUM_THREADS"] == "1"
    assert decoder_threads() == 1
    with pytest.raises(ValueError, match="threads must be >= 1; got 0"):
        apply_thread_budget(0)


def test_model_config_thread_budget_follows_processes_or_the_explicit_count():
    cpus = usable_cpus()
    assert ModelConfig("c", "b").thread_budget() == cpus
    assert ModelConfig("c", "b", worker_processes=2).thread_budget() == max(1, cpus // 2)
    assert ModelConfig("c", "b", worker_processes=0).thread_budget() == 1  # one process per CPU
    assert ModelConfig("c", "b", threads_per_worker=3, worker_processes=2).thread_budget() == 3
    with pytest.raises(ValueError, match="runtime must be one of"):
        ModelConfig("c", "b", runtime="tensorrt")


def test_bf16_units_come_from_the_cpuinfo_flags(tmp_path):
    amx = tmp_path / "amx"
    amx.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n")
    avx2 = tmp_path / "avx2"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma\n")
    assert bf16_units(amx) == ("AMX (amx_bf16)", "AVX512_BF16")
    assert bf16_units(avx2) == ()
    assert bf16_units(tmp_path / "missing") == ()
