"""Benchmark harness: both implementations and both modes run and report sane numbers (tiny, CPU);
the operation timings (loader, mask bank, audit) too."""

from __future__ import annotations

import json

import pytest

from lcgan_lightning import bench, bench_operations


@pytest.mark.parametrize("mode", ["fp32", "bf16_cl", "cl", "fused"])
def test_bench_measures_lightning_and_plain(mode):
    out = {}
    for impl in ("plain", "lightning"):
        spec = dict(impl=impl, mode=mode, image_size=32, batch=2, steps=2, warmup=1, ngf=4, ndf=4,
                    threads=1, cpu=True)
        r = bench._run_one(spec)
        assert r["device"] == "cpu" and r["s_per_step"] > 0
        assert r["images_per_s"] == pytest.approx(2 / r["s_per_step"])
        assert r["s_per_step_min"] <= r["s_per_step"]
        assert r["mem_kind"] == "cpu_peak_rss_minus_start" and r["peak_rss_mb"] > 0
        out[impl] = r
    json.dumps(out)  # JSON-able


def test_machine_info_names_the_cpu():
    info = bench.machine_info()
    assert info["cpu"] and info["torch"] and info["pytorch_lightning"]
    assert "gpu" in info or info["cuda"] is False


def test_mode_flags():
    flags = lambda bf16, cl, comp, fused: {"bf16": bf16, "channels_last": cl, "compile": comp,  # noqa: E731
                                           "fused_adam": fused}
    assert bench.mode_flags("fp32") == flags(False, False, False, False)
    assert bench.mode_flags("cl_compile") == flags(False, True, True, False)
    assert bench.mode_flags("bf16_cl") == flags(True, True, False, False)
    assert bench.mode_flags("compile") == flags(False, False, True, False)
    assert bench.mode_flags("bf16_cl_fused") == flags(True, True, False, True)
    assert set(bench.MODES) >= {"fused", "cl_fused", "bf16_cl_fused"}


def test_loader_throughput():
    r = bench_operations.loader_throughput(image_size=32, batch=4, workers=0, n=16, repeats=1)
    assert r["slices_per_s"] > 0 and r["slices"] == 16


def test_mask_bank_and_audit_timings():
    bank = bench_operations.mask_bank_timing(n_masks=4, image_size=64, patients=4, num_slices=8)
    assert bank["s"] > 0 and bank["complete"] and bank["budget_s"] == bench_operations.MASK_BANK_BUDGET_S
    audit = bench_operations.audit_timing(n_synthetic=24, n_real=40, image_size=32)
    assert audit["s"] > 0 and audit["budget_s"] == bench_operations.AUDIT_BUDGET_S
    json.dumps([bank, audit])  # JSON-able


def test_verdicts_timing():
    r = bench_operations.verdicts_timing(n_patients=6, repeats=3, images=12, size=16)
    assert r["comparisons"] == 9 and r["s"] > 0 and r["budget_s"] == bench_operations.VERDICTS_BUDGET_S
