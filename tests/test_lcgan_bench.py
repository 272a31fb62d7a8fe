"""Benchmark harness: both implementations and both modes run and report sane numbers (tiny, CPU)."""

from __future__ import annotations

import json

import pytest

from lcgan_lightning import bench


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


def test_loader_throughput_reports_every_collate():
    r = bench.loader_throughput(image_size=32, batch=4, workers=0, n=16, repeats=1)
    assert set(r["slices_per_s"]) == {"onehot_on_cpu", "storage_per_key", "current"}
    assert r["speedup"] > 0 and r["speedup_vs_storage_per_key"] > 0
