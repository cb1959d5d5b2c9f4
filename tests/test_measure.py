"""Measurement helpers: latency statistics, memory high-water mark, work counts, machine info."""

import numpy as np
import pytest
import torch

from defectbench.measure.compute import count_macs
from defectbench.measure.latency import LatencyStats, rounds_for
from defectbench.measure.machine import cpu_flags
from defectbench.measure.memory import (
    current_rss_mb,
    measure_cpu_peak,
    rss_high_water_supported,
)
from defectbench.suite import add_speedups


def test_latency_stats_are_percentiles_in_ms():
    samples = [0.010, 0.012, 0.011, 0.030, 0.010]
    stats = LatencyStats.from_seconds(samples)
    assert stats.p50 == pytest.approx(np.percentile(samples, 50) * 1e3)
    assert stats.p99 == pytest.approx(np.percentile(samples, 99) * 1e3)
    assert stats.rounds == 5 and stats.min == pytest.approx(10.0)
    assert stats.throughput(8) == pytest.approx(8 / 0.011)
    with pytest.raises(ValueError, match="zero rounds"):
        LatencyStats.from_seconds([])


def test_rounds_fill_the_time_budget_within_limits():
    assert rounds_for(0.1, 3.0) == 30
    assert rounds_for(10.0, 3.0) == 5
    assert rounds_for(1e-6, 3.0) == 200


@pytest.mark.skipif(not rss_high_water_supported(), reason="needs Linux /proc/self/clear_refs")
def test_cpu_peak_sees_a_large_temporary_allocation():
    def allocate():
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, freed on return
        return float(block.sum())

    assert current_rss_mb() > 0
    m = measure_cpu_peak(allocate)
    assert m.kind == "cpu_rss_high_water"
    assert m.delta_mb >= 60 and m.peak_mb >= m.delta_mb


def test_macs_of_a_conv_match_the_formula():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_macs(conv, 16) == 8 * 3 * 9 * 16 * 16


def test_cpu_flags_report_the_isa_extensions_asked_for():
    flags = cpu_flags()
    assert {"avx512f", "avx512_vnni", "amx_int8", "amx_bf16"} <= set(flags)


def test_speedup_is_against_the_fp32_teacher_at_the_same_device_and_batch():
    def bench(variant, precision, batch, p50):
        return {"extra_info": {"variant": variant, "precision": precision, "device": "cpu",
                               "batch": batch, "latency_ms": {"p50": p50}}}

    benches = [bench("tf_efficientnet_lite2.teacher", "fp32", 1, 30.0),
               bench("tf_efficientnet_lite2.teacher", "bf16", 1, 20.0),
               bench("x.int8_ort", "int8", 1, 10.0),
               bench("x.int8_ort", "int8", 8, 10.0)]
    add_speedups(benches)
    assert [b["extra_info"]["speedup_vs_reference"] for b in benches] == [1.0, 1.5, 3.0, None]
