"""Settings follow the machine: the CPU share of each HTTP worker sizes the inference threads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from visiongate.service.settings import MAX_DEFAULT_INFERENCE_WORKERS, Settings, cgroup_cpu_limit, usable_cpus

CPUS = usable_cpus()


def test_one_http_worker_gets_one_inference_caller_per_usable_cpu() -> None:
    s = Settings()
    assert s.inference_workers == min(CPUS, MAX_DEFAULT_INFERENCE_WORKERS)
    assert s.solo_intra_op_threads == CPUS


def test_several_http_workers_share_the_cpus_instead_of_each_taking_all() -> None:
    s = Settings(http_workers=CPUS * 2)
    assert s.inference_workers == 1
    assert s.solo_intra_op_threads == 1


def test_values_given_explicitly_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIONGATE_SOLO_INTRA_OP_THREADS", "0")
    s = Settings(http_workers=4, inference_workers=3)
    assert (s.inference_workers, s.solo_intra_op_threads) == (3, 0)


def test_limits_are_settings_with_the_documented_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIONGATE_MAX_BODY_BYTES", "1234")
    monkeypatch.setenv("VISIONGATE_MEMORY_RELEASE_INTERVAL_S", "0")
    s = Settings()
    assert s.max_body_bytes == 1234
    assert s.memory_release_interval_s == 0


def test_a_container_cpu_quota_is_read_from_cgroup_v2(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("250000 100000\n")  # limits.cpu: 2.5
    assert cgroup_cpu_limit(tmp_path) == 2.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(tmp_path) is None


def test_a_container_cpu_quota_is_read_from_cgroup_v1(tmp_path: Path) -> None:
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_limit(tmp_path) == 2.0
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(tmp_path) is None
    assert cgroup_cpu_limit(tmp_path / "absent") is None


def test_usable_cpus_never_exceeds_the_affinity_mask() -> None:
    assert 1 <= usable_cpus() <= len(os.sched_getaffinity(0))
