"""Measurement helpers: latency statistics, memory high-water mark, work counts, machine info."""

from pathlib import Path

import numpy as np
import pytest
import torch

from defectbench.measure.compute import count_macs, matmul_peak_gflops
from defectbench.measure.latency import LatencyStats, alternating_blocks, rounds_for
from defectbench.measure.machine import cpu_flags, cpu_identity
from defectbench.measure.memory import (
    MemoryMeasurement,
    current_rss_mb,
    measure_cpu_peak,
    try_reset_rss_high_water,
)
from defectbench.suite import SpeedTarget, add_speedups, inference_cost, judge_speed_target


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


# Measured in a fresh interpreter, not in the test session: there, after ~2 GB of earlier
# tests, glibc can serve the block from freed heap chunks that are still resident (it looks
# for a free chunk before it decides to mmap), so RSS does not rise at all (seen once in CI:
# delta 0 MB at 2.1 GB RSS; reproduced by freeing 96 MiB of 8 MiB arrays first). A fresh heap
# has no such chunk: the block is mapped and touched anew.
_CHILD_PEAK = """
import json, numpy as np
from defectbench.measure.memory import measure_cpu_peak, current_rss_mb
earlier = np.ones(256 * 2**20 // 8); earlier.sum(); del earlier   # lifetime peak +256 MiB
def allocate():
    block = np.ones(128 * 2**20 // 8)  # 128 MiB, freed on return
    return float(block.sum())
before = current_rss_mb()
m = measure_cpu_peak(allocate)
print(json.dumps({"before": before, **m.to_dict()}))
"""


@pytest.mark.skipif(not try_reset_rss_high_water(), reason="needs Linux /proc/self/clear_refs")
def test_cpu_peak_sees_a_large_temporary_allocation_and_not_an_earlier_one():
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _CHILD_PEAK], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    m = json.loads(out.splitlines()[-1])
    assert m["kind"] == "cpu_rss_high_water"
    assert m["delta_mb"] >= 64 and m["peak_mb"] >= m["delta_mb"]
    # the reset worked: the 256 MiB freed before the call is not in its peak
    assert m["peak_mb"] - m["before"] < 200


def test_cpu_peak_without_a_resettable_mark_says_so_and_still_runs(tmp_path, monkeypatch):
    # a sandbox without a writable clear_refs: every CPU perf case used to error here
    import defectbench.measure.memory as memory

    monkeypatch.setattr(memory, "_CLEAR_REFS", tmp_path / "no" / "clear_refs")
    calls = []
    m = measure_cpu_peak(lambda: calls.append(1))
    assert calls == [1]
    assert (m.kind, m.delta_mb) == ("cpu_rss_high_water_not_reset", None)
    assert m.peak_mb >= current_rss_mb() * 0.5


def test_macs_of_a_conv_match_the_formula():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    assert count_macs(conv, 16) == 8 * 3 * 9 * 16 * 16


def test_macs_of_a_vit_include_its_fused_attention():
    # FlopCounterMode has no formula for the fused CPU attention kernel: the attention
    # matmuls counted as nothing; timm's unfused path computes them as plain matmuls
    import timm
    from torch.utils.flop_counter import FlopCounterMode

    model = timm.create_model("vit_tiny_patch16_224", num_classes=2, img_size=64).eval()
    fused = count_macs(model, 64)
    for block in model.blocks:
        block.attn.fused_attn = False
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(torch.zeros(1, 3, 64, 64))
    unfused = counter.get_total_flops() // 2
    tokens, width, blocks = 17, 192, 12
    assert fused == unfused
    assert fused - count_macs_without_attention(model) == blocks * 2 * tokens**2 * width


def count_macs_without_attention(model):
    """Convolutions and linear layers only, counted from their shapes."""
    total = []

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Linear):
            total.append(output.numel() * module.in_features)
        else:
            k = module.weight[0].numel()
            total.append(output.numel() * k)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    with torch.inference_mode():
        model(torch.zeros(1, 3, 64, 64))
    for h in handles:
        h.remove()
    return sum(total)


def test_the_fp32_peak_is_the_faster_of_torch_and_onnx_runtime(monkeypatch):
    # torch's BLAS can run a narrower code path than ONNX Runtime's kernels, whose rows then
    # read above 100% of a torch-only peak
    import defectbench.measure.compute as compute

    compute.matmul_peak_gflops.cache_clear()  # measured once per process: start afresh
    try:
        monkeypatch.setattr(compute, "_ort_matmul_peak_gflops", lambda n, threads: 1e9)
        assert compute.matmul_peak_gflops("float32", "cpu", 64) == 1e9
        assert compute.matmul_peak_gflops("bfloat16", "cpu", 64) < 1e9  # torch's, for bf16
        # and where ONNX Runtime is the slower, torch's figure stands
        compute.matmul_peak_gflops.cache_clear()
        monkeypatch.setattr(compute, "_ort_matmul_peak_gflops", lambda n, threads: 1e-9)
        assert 1e-9 < compute.matmul_peak_gflops("float32", "cpu", 64) < 1e9
    finally:
        compute.matmul_peak_gflops.cache_clear()  # no faked figure outlives the test


def test_cpu_flags_report_the_isa_extensions_asked_for():
    text = "processor\t: 0\nflags\t\t: fpu sse avx512f avx512_vnni amx_tile\nbugs\t\t: x\n"
    flags = cpu_flags(text)
    assert {"avx512f", "avx512_vnni", "amx_int8", "amx_bf16"} <= set(flags)
    assert flags["avx512f"] and flags["avx512_vnni"]
    assert not flags["amx_int8"] and not flags["amx_bf16"]
    assert cpu_flags("processor\t: 0\nFeatures\t: fp asimd\n") == {}  # no x86 flags line
    # this machine: the same answers as reading the flags line directly
    here = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    line = next((ln for ln in here.splitlines() if ln.startswith("flags")), None)
    if line is not None:
        present = set(line.split(":", 1)[1].split())
        assert cpu_flags() == {f: f in present for f in cpu_flags(text)}


def test_cpu_identity_tells_processors_apart_by_family_model_and_flags():
    block = ("processor\t: {n}\nvendor_id\t: AuthenticAMD\ncpu family\t: {family}\n"
             "model\t\t: 17\nmodel name\t: AMD EPYC\nstepping\t: 1\nflags\t\t: {flags}\n")
    zen4 = cpu_identity(block.format(n=0, family=25, flags="fpu avx2 avx512f avx512_vnni") + "\n"
                    + block.format(n=1, family=25, flags="fpu avx2 avx512f avx512_vnni"))
    zen5 = cpu_identity(block.format(n=0, family=26, flags="fpu avx2 avx512f avx512_vnni avx_vnni"))
    assert zen4["name"] == zen5["name"] == "AMD EPYC"  # the name alone cannot tell them apart
    assert (zen4["family"], zen5["family"]) == ("25", "26")
    assert zen4["flags_sha256"] != zen5["flags_sha256"]
    assert zen4["isa"]["avx512_vnni"] and not zen4["isa"]["avx_vnni"] and zen5["isa"]["avx_vnni"]
    assert cpu_identity()["flags_sha256"]  # and this machine's reads


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


class _SharedMachine:
    """A simulated clock: each call advances it by its cost, tripled during a burst of foreign
    load that covers a window of call indices."""

    def __init__(self, burst: range = range(0)) -> None:
        self.now, self.calls, self.burst, self.order = 0.0, 0, burst, []

    def call(self, name: str, cost: float):
        def run():
            self.order.append(name)
            self.now += cost * (3.0 if self.calls in self.burst else 1.0)
            self.calls += 1

        return run

    def timer(self) -> float:
        return self.now


def _one_after_the_other(machine, runs, calls_each):
    stats = []
    for run in runs:
        times = []
        for _ in range(calls_each):
            start = machine.timer()
            run()
            times.append(machine.timer() - start)
        stats.append(LatencyStats.from_seconds(times))
    return stats


def test_alternating_blocks_keep_the_ratio_through_a_burst_that_flips_separate_timing():
    # INT8 costs 1, FP32 costs 2: the true ratio is 2. A burst covers the first 30 calls.
    machine = _SharedMachine(burst=range(0, 30))
    int8, fp32 = _one_after_the_other(
        machine, [machine.call("int8", 1.0), machine.call("fp32", 2.0)], calls_each=40
    )
    assert fp32.p50 / int8.p50 < 1.0  # timed one after the other, INT8 took the burst

    machine = _SharedMachine(burst=range(0, 30))
    int8, fp32 = alternating_blocks(machine.call("int8", 1.0), machine.call("fp32", 2.0),
                                    blocks=6, block_seconds=6.0, timer=machine.timer)
    assert fp32.p50 / int8.p50 == 2.0


def test_alternating_blocks_swap_the_order_and_warm_up_each_block():
    machine = _SharedMachine()
    a, b = alternating_blocks(machine.call("a", 1.0), machine.call("b", 1.0), blocks=2,
                              block_seconds=2.0, warmup_calls=1, timer=machine.timer)
    # block: 1 warm-up call, then timed calls until 2 s have passed (2 calls of 1 s)
    assert machine.order == ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3
    assert (a.rounds, b.rounds) == (4, 4)
    slow = _SharedMachine()
    alternating_blocks(slow.call("a", 5.0), slow.call("b", 5.0), blocks=1, block_seconds=1.0,
                       warmup_calls=0, timer=slow.timer)
    assert slow.order == ["a", "b"]  # a call longer than the block still gets timed once
    with pytest.raises(ValueError, match="need blocks >= 1 and block_seconds > 0"):
        alternating_blocks(slow.call("a", 1.0), slow.call("b", 1.0), blocks=0, block_seconds=1)


class _TwoVariants:
    """The catalog of the speed target below: its two variants and their one build each."""

    names = ["m.int8", "m.onnx"]

    def precisions(self, name, device):
        return {"m.int8": ("int8",), "m.onnx": ("fp32",)}[name]


class _SuiteOnMachine:
    """What `judge_speed_target` asks of a suite: the zoo's catalog, the cases' earlier
    benchmark results, and a predictor per case, whose call costs simulated time on `machine`."""

    def __init__(self, machine, costs, separate_p50):
        self.machine, self.costs = machine, costs
        self.catalog = _TwoVariants()
        self.latency = {case: LatencyStats(p50, p50, p50, p50, p50, p50, 10)
                        for case, p50 in separate_p50.items()}

    def predictor(self, case):
        run = self.machine.call(case.variant, self.costs[case.variant])

        class _Predictor:
            def predict_logits(self, x):
                return run()

        return _Predictor()

    def perf_batch(self, case):
        return None


def test_a_speed_target_is_judged_on_the_alternating_re_timing_not_the_separate_one():
    target = SpeedTarget("int8 vs fp32", "m.int8", "int8", "m.onnx", "fp32", "cpu", 1, 1.5)
    fast_case, slow_case = target.cases
    # the separate benchmarks saw a burst (1.2x); re-timed, the FP32 call costs 2.5x the INT8
    machine = _SharedMachine()
    suite = _SuiteOnMachine(machine, {"m.int8": 1.0, "m.onnx": 2.5},
                            {fast_case: 10.0, slow_case: 12.0})
    verdict = judge_speed_target(suite, target, seconds=120.0, timer=machine.timer)
    assert verdict["measured"] and verdict["timing"] == "alternating_blocks"
    assert verdict["ratio"] == pytest.approx(2.5) and verdict["passed"]
    assert verdict["ratio_separately_timed"] == pytest.approx(1.2)
    assert (verdict["faster_p50_ms"], verdict["slower_p50_ms"]) == (1000.0, 2500.0)
    assert "2.50x, target >= 1.50x (their separate benchmarks: 1.20x)" in verdict["message"]
    assert set(machine.order) == {"m.int8", "m.onnx"}

    machine = _SharedMachine()  # the other way round: INT8 no faster, the target fails
    suite = _SuiteOnMachine(machine, {"m.int8": 2.0, "m.onnx": 2.0},
                            {fast_case: 10.0, slow_case: 30.0})
    verdict = judge_speed_target(suite, target, seconds=120.0, timer=machine.timer)
    assert verdict["ratio"] == pytest.approx(1.0) and not verdict["passed"]

    del suite.latency[slow_case]  # a case this run did not benchmark is reported, not timed
    assert judge_speed_target(suite, target) == {
        "name": "int8 vs fp32", "measured": False, "missing": [slow_case.id]
    }


def test_a_speed_target_met_exactly_passes_and_its_verdict_carries_its_own_limit():
    # "at least min_ratio times as long": a ratio equal to the limit meets the target, and
    # the JSON's min_ratio is the one the verdict was judged against
    from defectbench.suite import SPEED_TARGET_BLOCKS

    target = SpeedTarget("int8 vs fp32", "m.int8", "int8", "m.onnx", "fp32", "cpu", 1, 2.5)
    fast_case, slow_case = target.cases
    machine = _SharedMachine()
    suite = _SuiteOnMachine(machine, {"m.int8": 2.0, "m.onnx": 5.0},
                            {fast_case: 10.0, slow_case: 25.0})
    verdict = judge_speed_target(suite, target, seconds=120.0, timer=machine.timer)
    assert verdict["ratio"] == 2.5 and verdict["passed"] is True
    assert verdict["min_ratio"] == 2.5 and verdict["blocks"] == SPEED_TARGET_BLOCKS
    # --latency-seconds is the whole re-timing: 120 s of timed calls shared by the two
    # cases' blocks (each block ends on a whole call: 2 s and 5 s calls fill 10 s exactly),
    # plus each block's two warm-up calls
    warmups = SPEED_TARGET_BLOCKS * 2 * (2.0 + 5.0)
    assert machine.now - warmups == pytest.approx(120.0)
    target = SpeedTarget("tighter", "m.int8", "int8", "m.onnx", "fp32", "cpu", 1, 2.51)
    verdict = judge_speed_target(suite, target, seconds=120.0, timer=machine.timer)
    assert verdict["passed"] is False and verdict["min_ratio"] == 2.51


def test_cuda_memory_is_the_artifacts_own_allocation_plus_its_first_call(monkeypatch):
    # the session keeps every loaded artifact on the GPU, so the allocator's peak would count
    # all of them; the figure must be this artifact's load plus what its call adds
    from defectbench import suite as suite_mod
    from defectbench.suite import Case

    class Predictor:
        runtime = "torch"
        calls = 0

        def predict_logits(self, batch):
            Predictor.calls += 1

    suite = object.__new__(suite_mod.Suite)
    key = ("v", "fp32", "cuda")
    suite._predictors = {key: Predictor()}
    suite.cuda_load_mb = {key: 40.0}

    def fake_peak(fn, device):
        fn()
        return MemoryMeasurement("cuda_peak_allocated", 900.0, 12.5)

    monkeypatch.setattr(suite_mod, "measure_peak", fake_peak)
    memory = suite.memory(Case(*key, 8), np.zeros((8, 3, 4, 4), np.float32))
    assert (memory.kind, memory.peak_mb, memory.delta_mb) == (
        "cuda_artifact_peak_allocated", 52.5, 12.5)
    # ONNX Runtime / TensorRT allocate outside torch: said, not guessed; the call still runs
    Predictor.runtime = "onnxruntime"
    memory = suite.memory(Case(*key, 8), np.zeros((8, 3, 4, 4), np.float32))
    assert (memory.kind, memory.peak_mb, memory.delta_mb) == (
        "cuda_not_measured_outside_torch", None, None)
    assert Predictor.calls == 2


@pytest.mark.parametrize(("mode", "calls"), [("dynamic", [1] * 5), ("static", [5])])
def test_val_is_scored_in_calls_as_the_zoo_scored_dev(mode, calls):
    # a dynamic INT8 artifact's score for an image depends on its call's other images: val is
    # scored one image per call, as its dev threshold was chosen
    from defectbench import suite as suite_mod
    from defectbench.compress import OrtDynamicInt8Config, OrtStaticInt8Config
    from defectbench.zoo.derived import OrtInt8Recipe

    quant = OrtDynamicInt8Config() if mode == "dynamic" else OrtStaticInt8Config()
    seen: list[int] = []

    class Predictor:
        runtime = "onnxruntime"
        differs_from_build = None

        def predict_logits(self, batch):
            seen.append(len(batch))
            return np.zeros((len(batch), 2), np.float32)

    class Catalog:
        def recipe(self, name):
            return OrtInt8Recipe("parent", quant)

    suite = object.__new__(suite_mod.Suite)
    suite.catalog = Catalog()
    suite.load_predictor = lambda case: Predictor()
    suite.val_arrays = lambda variant: np.zeros((5, 3, 4, 4), np.float32)
    probs, runtime, differs = suite.predict_val(suite_mod.Case("v.int8_ort_dyn", "int8", "cpu"))
    assert seen == calls and probs.shape == (5,) and runtime == "onnxruntime"
    assert np.array_equal(probs, np.full(5, 0.5, np.float32))
    assert differs is None


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_val_logits_that_are_not_finite_are_refused_naming_the_case(precision):
    # one logit overflowed to +inf (an FP16 activation beyond 65504) gives a probability of
    # exactly 1: a confident prediction, which the scores' own NaN/inf check cannot see
    from types import SimpleNamespace

    from defectbench import suite as suite_mod
    from defectbench.errors import ArtifactError
    from defectbench.runtime.predictor import defect_probability

    logits = np.zeros((5, 2), np.float32)
    logits[1, 1] = np.inf
    logits[3, 0] = np.nan
    assert np.isfinite(defect_probability(logits[:2])).all()  # why the check is on logits

    class Predictor:
        runtime, differs_from_build = "torch", None

        def predict_logits(self, batch):
            return logits[: len(batch)]

    suite = object.__new__(suite_mod.Suite)
    suite.catalog = SimpleNamespace(recipe=lambda name: object())  # scored 32 per call
    suite.val = SimpleNamespace(ids=tuple(f"cell{i:04d}.png" for i in range(5)))
    suite.load_predictor = lambda case: Predictor()
    suite.val_arrays = lambda variant: np.zeros((5, 3, 4, 4), np.float32)
    overflow = r" at fp16 an activation beyond 65504 overflows" if precision == "fp16" else ""
    with pytest.raises(ArtifactError, match=rf"^v {precision} on cuda gave logits that are not "
                       rf"finite for 2 of 5 val images \(cell0001.png, cell0003.png\); they "
                       rf"must not be scored as predictions:{overflow}"):
        suite.predict_val(suite_mod.Case("v", precision, "cuda"))


def test_a_single_non_finite_logit_is_refused_and_many_are_named_by_their_first_three():
    # one image with an inf logit is enough to make its verdict a made-up prediction; with
    # many, the message names the first three and says there are more
    from types import SimpleNamespace

    from defectbench import suite as suite_mod
    from defectbench.errors import ArtifactError

    suite = object.__new__(suite_mod.Suite)
    suite.val = SimpleNamespace(ids=tuple(f"cell{i:04d}.png" for i in range(40)))
    case = suite_mod.Case("v", "fp32", "cpu")
    logits = np.zeros((40, 2), np.float32)
    suite._check_finite_logits(case, logits)  # all finite: scored
    logits[37, 0] = -np.inf
    with pytest.raises(ArtifactError, match=r"not finite for 1 of 40 val images "
                       r"\(cell0037.png\); they must"):
        suite._check_finite_logits(case, logits)
    logits[[2, 5, 9], 1] = np.nan
    with pytest.raises(ArtifactError, match=r"not finite for 4 of 40 val images "
                       r"\(cell0002.png, cell0005.png, cell0009.png, \.\.\.\); they must"):
        suite._check_finite_logits(case, logits)


def test_cost_is_core_hours_on_cpu_and_gpu_hours_on_cuda():
    # 3.6 ms per image: a million images keep one worker busy for exactly one hour
    assert inference_cost(3.6e-3, "cpu", 2) == pytest.approx(
        {"cost_core_hours_per_million": 2.0, "cost_gpu_hours_per_million": None})
    # a CUDA case's host threads are not what it costs: one GPU for that hour
    assert inference_cost(3.6e-3, "cuda", 16) == pytest.approx(
        {"cost_core_hours_per_million": None, "cost_gpu_hours_per_million": 1.0})


def test_cpu_matmul_peak_is_plausible_and_measured_once_per_process():
    # a 256^2 float32 matmul: 33.5 MFLOP; even one slow core does it in well under a second
    peak = matmul_peak_gflops("float32", "cpu", 256)
    assert 0.03 < peak < 1e5
    assert matmul_peak_gflops("float32", "cpu", 256) == peak  # measured once per process


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available; tox -e gpu")
def test_cuda_matmul_peak_sees_tensor_cores():
    # fp16 runs on tensor cores and fp32 (TF32 off) does not: the fp16 peak is at least about
    # twice the fp32 one on every tensor-core GPU (GeForce parts with fp32 accumulation ~2x,
    # datacenter parts 10x and more); timing dominated by launch overhead would make them equal
    fp32 = matmul_peak_gflops("float32", "cuda")
    fp16 = matmul_peak_gflops("float16", "cuda")
    assert fp16 > 1.5 * fp32 > 0


def test_isolated_child_that_cannot_answer_never_returns_into_the_probe(monkeypatch):
    # an answer that cannot be written (here: not JSON) must end the child, not send it back
    # into the probe's request loop; the parent hears "no answer" and carries on
    import os

    from defectbench.measure import isolated

    parent = os.getpid()
    monkeypatch.setattr(isolated, "_measure_in_child", lambda catalog, request: {"x": object()})
    answer = isolated._answer_forked(None, {})
    assert os.getpid() == parent
    assert answer == {"error": "measuring child ended (exit code 1) without an answer; its "
                      "traceback, if any, is in the probe's stderr"}
    monkeypatch.setattr(isolated, "_measure_in_child", lambda catalog, request: 1 / 0)
    assert isolated._answer_forked(None, {}) == {"error": "ZeroDivisionError: division by zero"}


def test_a_dead_isolated_probe_is_reported_with_its_status_and_stderr():
    import subprocess
    import sys
    import tempfile

    from defectbench.measure.isolated import IsolatedMemoryError, IsolatedMemoryProbe

    probe = IsolatedMemoryProbe.__new__(IsolatedMemoryProbe)  # a probe process that dies
    probe._stderr = tempfile.TemporaryFile(mode="w+")
    probe._process = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stderr.write('catalog broke'); sys.exit(3)"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=probe._stderr, text=True,
    )
    probe._process.wait()
    with pytest.raises(IsolatedMemoryError, match=r"probe exited \(status 3\): catalog broke"):
        probe.measure("v", "fp32", "cpu", 1, 1)
    probe.close()
    assert probe._stderr.closed


def test_an_isolated_measurement_error_carries_the_probes_stderr():
    import subprocess
    import sys
    import tempfile

    from defectbench.measure.isolated import IsolatedMemoryError, IsolatedMemoryProbe

    probe = IsolatedMemoryProbe.__new__(IsolatedMemoryProbe)  # a live probe that fails
    probe._stderr = tempfile.TemporaryFile(mode="w+")
    answer_an_error = (
        "import json, sys\n"
        "sys.stderr.write('Traceback: the child broke here'); sys.stderr.flush()\n"
        "for line in sys.stdin:\n"
        "    print(json.dumps({'error': 'KeyError: x'}), flush=True)\n"
    )
    probe._process = subprocess.Popen(
        [sys.executable, "-c", answer_an_error],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=probe._stderr, text=True,
    )
    with pytest.raises(IsolatedMemoryError,
                       match=r"KeyError: x\nprobe stderr \(end\): Traceback: the child broke"):
        probe.measure("v", "fp32", "cpu", 1, 1)
    probe.close()



def test_an_untrained_survey_row_gets_no_speedup_against_the_trained_teacher():
    teacher = {"extra_info": {"variant": "t.teacher", "precision": "fp32", "device": "cpu",
                              "batch": 1, "latency_ms": {"p50": 10.0}}}
    survey = {"extra_info": {"variant": "survey.vit_base_patch16_224", "precision": "int8",
                             "device": "cpu", "batch": 1, "latency_ms": {"p50": 5.0},
                             "latency_only": True}}
    add_speedups([teacher, survey], "t.teacher")
    assert teacher["extra_info"]["speedup_vs_reference"] == 1.0
    assert survey["extra_info"]["speedup_vs_reference"] is None


def test_a_stuck_isolated_child_is_killed_and_named_not_waited_for(monkeypatch):
    # a runtime's thread pool can deadlock in a forked child: the probe (and the suite behind
    # it) waited for its answer for ever
    import time

    from defectbench.measure import isolated

    monkeypatch.setattr(isolated, "_measure_in_child", lambda catalog, request: time.sleep(60))
    start = time.monotonic()
    answer = isolated._answer_forked(None, {}, timeout_s=0.5)
    assert time.monotonic() - start < 10
    assert answer == {"error": "measuring child gave no answer within 0.5 s and was killed (a "
                      "runtime deadlocked after the fork, or a load far slower than any "
                      "artifact's)"}


def test_an_isolated_child_killed_by_a_signal_is_named(monkeypatch):
    import os
    import signal

    from defectbench.measure import isolated

    monkeypatch.setattr(isolated, "_measure_in_child",
                        lambda catalog, request: os.kill(os.getpid(), signal.SIGKILL))
    assert isolated._answer_forked(None, {}) == {
        "error": "measuring child was killed by signal 9 (SIGKILL) (the kernel's out-of-memory "
        "killer sends it) without an answer; its traceback, if any, is in the probe's stderr"}


def test_a_truncated_isolated_answer_is_an_error_not_a_crash_of_the_probe(monkeypatch):
    import json
    import types

    from defectbench.measure import isolated

    half_written = types.SimpleNamespace(dumps=lambda result: '{"kind": "cpu_rss', loads=json.loads,
                                         JSONDecodeError=json.JSONDecodeError)
    monkeypatch.setattr(isolated, "_measure_in_child", lambda catalog, request: {})
    monkeypatch.setattr(isolated, "json", half_written)
    assert isolated._answer_forked(None, {}) == {
        "error": "measuring child ended (exit code 0) after writing a malformed answer "
        "'{\"kind\": \"cpu_rss'"}


@pytest.mark.parametrize("stdout, match", [
    ("hello from a library\n", r"probe wrote 'hello from a library\\n', not a JSON answer; "
                               r"its stderr \(end\): warned"),
    ('{"peak": 1}\n', r"b1: the probe answered \{\"peak\": 1\}, not the fields \['batch', "),
])
def test_an_isolated_probe_that_answers_garbage_is_named(stdout, match):
    import subprocess
    import sys
    import tempfile

    from defectbench.measure.isolated import IsolatedMemoryError, IsolatedMemoryProbe

    probe = IsolatedMemoryProbe.__new__(IsolatedMemoryProbe)
    probe._stderr = tempfile.TemporaryFile(mode="w+")
    garbage = (f"import sys\nsys.stderr.write('warned'); sys.stderr.flush()\n"
               f"for line in sys.stdin:\n    sys.stdout.write({stdout!r}); sys.stdout.flush()\n")
    probe._process = subprocess.Popen(
        [sys.executable, "-c", garbage],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=probe._stderr, text=True,
    )
    with pytest.raises(IsolatedMemoryError, match=match):
        probe.measure("v", "fp32", "cpu", 1, 1)
    probe.close()


@pytest.mark.parametrize("samples", [[0.001, float("nan")], [0.002, -0.001], [float("inf")]])
def test_latency_of_nan_or_negative_samples_is_refused_not_averaged(samples):
    with pytest.raises(ValueError, match="latency samples must be finite, non-negative seconds"):
        LatencyStats.from_seconds(samples)


@pytest.mark.parametrize("block_seconds", [float("nan"), float("inf")])
def test_alternating_blocks_refuse_a_block_that_never_ends(block_seconds):
    calls = []

    def timer():  # the block would time calls until memory ran out: stop it early instead
        if len(calls) > 1000:
            raise RuntimeError("the block never ended")
        return float(len(calls))

    with pytest.raises(ValueError, match="need blocks >= 1 and block_seconds > 0"):
        alternating_blocks(lambda: calls.append(1), lambda: calls.append(2), blocks=1,
                           block_seconds=block_seconds, timer=timer)
    assert calls == []


def test_cpu_identity_of_an_arm_core_tells_cores_apart_and_claims_no_x86_isa():
    block = ("processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
             "CPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: {part}\nCPU revision\t: 1\n")
    neoverse_n1 = cpu_identity(block.format(features="fp asimd aes", part="0xd0c"))
    neoverse_v1 = cpu_identity(block.format(features="fp asimd aes sve", part="0xd40"))
    # all None and the hash of no flags made every ARM core the same processor
    assert (neoverse_n1["vendor"], neoverse_n1["model"]) == ("0x41", "0xd0c")
    assert neoverse_n1["model"] != neoverse_v1["model"]
    assert neoverse_n1["flags_sha256"] != neoverse_v1["flags_sha256"]
    assert neoverse_n1["isa"] == {}  # unknown, not "no AVX2"
    no_flags = cpu_identity("processor\t: 0\nmodel name\t: Mystery\n")
    assert no_flags["flags_sha256"] is None and no_flags["isa"] == {}


def test_cpu_identity_reads_past_leading_blank_lines():
    # an empty first "block" read as a processor with no name and no AVX2
    text = ("\n\nprocessor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Xeon\n"
            "flags\t\t: fpu avx2\n")
    identity = cpu_identity(text)
    assert identity["name"] == "Xeon" and identity["isa"]["avx2"]
    assert identity == cpu_identity(text.lstrip("\n"))


def test_counting_macs_of_a_model_that_fails_leaves_it_in_training_mode():
    class Broken(torch.nn.Module):
        def forward(self, x):
            raise RuntimeError("broken forward")

    model = Broken().train()
    with pytest.raises(RuntimeError, match="broken forward"):
        count_macs(model, 8)
    assert model.training


def test_latency_stats_report_p90_mean_and_max_and_accept_a_zero_sample():
    # 1..100 ms: every statistic differs from the others, so a swapped one shows
    samples = [i / 1e3 for i in range(1, 101)]
    stats = LatencyStats.from_seconds(samples)
    assert stats.p90 == pytest.approx(np.percentile(samples, 90) * 1e3)
    assert stats.mean == pytest.approx(50.5) and stats.p50 == pytest.approx(50.5)
    skewed = LatencyStats.from_seconds([0.001, 0.001, 0.001, 0.010])
    assert skewed.mean == pytest.approx(3.25) and skewed.p50 == pytest.approx(1.0)
    assert (skewed.min, skewed.max) == (pytest.approx(1.0), pytest.approx(10.0))
    # a call faster than the clock's resolution reads 0 s: finite and non-negative, kept
    assert LatencyStats.from_seconds([0.0, 0.002]).min == 0.0


def test_rounds_for_a_free_call_and_a_budget_that_divides_in_floating_point():
    assert rounds_for(0.0, 3.0) == 200  # no division by zero: the most rounds
    # 0.7 / 0.1 is 6.999999999999999 in floating point: still 7 rounds, not 6
    assert rounds_for(0.1, 0.7, lo=1) == 7


def _fake_status(path, rss_kb, hwm_kb):
    path.write_text(f"Name:\tpython\nVmHWM:\t{hwm_kb} kB\nVmRSS:\t{rss_kb} kB\n")


def test_cpu_peak_is_the_high_water_mark_in_mib_and_its_rise_over_the_rss_before(
        tmp_path, monkeypatch):
    # a simulated /proc/self/status: the call raises the high-water mark from 10 to 30 MiB
    # and leaves 12 MiB resident
    import defectbench.measure.memory as memory

    status = tmp_path / "status"
    _fake_status(status, rss_kb=10 * 1024, hwm_kb=10 * 1024)
    monkeypatch.setattr(memory, "_STATUS", status)
    monkeypatch.setattr(memory, "_CLEAR_REFS", tmp_path / "clear_refs")
    assert current_rss_mb() == 10.0  # MiB (1024 kB), not MB
    m = measure_cpu_peak(lambda: _fake_status(status, rss_kb=12 * 1024, hwm_kb=30 * 1024))
    assert (tmp_path / "clear_refs").read_text() == "5"  # the mark was reset first
    assert m == MemoryMeasurement("cpu_rss_high_water", 30.0, 20.0)
    # without a resettable mark: the process's high-water mark, not its current RSS
    monkeypatch.setattr(memory, "_CLEAR_REFS", tmp_path / "no" / "clear_refs")
    assert not try_reset_rss_high_water()
    m = measure_cpu_peak(lambda: None)
    assert m == MemoryMeasurement("cpu_rss_high_water_not_reset", 30.0, None)


def test_cuda_peak_is_the_allocators_peak_in_mib_reset_before_the_call(monkeypatch):
    # torch.cuda simulated: 100 MiB held before the call, which allocates 50 MiB more at peak
    from defectbench.measure import memory
    from defectbench.runtime import precision

    state = {"allocated": 100 * 2**20, "peak": 900 * 2**20, "events": []}

    def run():
        state["events"].append("call")
        state["peak"] = max(state["peak"], state["allocated"] + 50 * 2**20)

    def reset():
        state["events"].append("reset")
        state["peak"] = state["allocated"]

    monkeypatch.setattr(precision, "cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", reset)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda: state["allocated"])
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: state["peak"])
    m = memory.measure_cuda_peak(run)
    assert state["events"] == ["reset", "call"]
    assert m == MemoryMeasurement("cuda_peak_allocated", 150.0, 50.0)
    assert memory.cuda_allocated_mb() == 100.0


class _FakeCatalog:
    """The two catalog calls the isolated child makes, with a simulated RSS: loading adds
    3 MiB, the call's high-water mark is 7 MiB above what the child held before loading."""

    def __init__(self, status):
        self.status, self.batches = status, []

    def manifest(self, variant):
        return {"preprocess": {"size": 4}}

    def predictor(self, variant, precision, device):
        _fake_status(self.status, rss_kb=(100 + 3) * 1024, hwm_kb=(100 + 3) * 1024)
        catalog = self

        class Predictor:
            def predict_logits(self, batch):
                catalog.batches.append(batch.shape)
                _fake_status(catalog.status, rss_kb=103 * 1024, hwm_kb=107 * 1024)

        return Predictor()


def test_the_isolated_child_reports_load_and_peak_above_its_own_start_in_mib(
        tmp_path, monkeypatch):
    from defectbench.measure import isolated
    from defectbench.measure import memory as memory_mod

    status = tmp_path / "status"
    _fake_status(status, rss_kb=100 * 1024, hwm_kb=500 * 1024)  # earlier life: not counted
    monkeypatch.setattr(memory_mod, "_STATUS", status)
    monkeypatch.setattr(memory_mod, "_CLEAR_REFS", tmp_path / "clear_refs")
    catalog = _FakeCatalog(status)
    threads = torch.get_num_threads()
    request = {"variant": "v", "precision": "fp32", "device": "cpu", "batch": 3, "threads": 1}
    try:
        answer = isolated._measure_in_child(catalog, request)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert answer == {"kind": "cpu_rss_isolated", "batch": 3, "load_mb": 3.0,
                      "peak_delta_mb": 7.0}
    assert catalog.batches == [(3, 3, 4, 4)]
    # no resettable mark: the child's figure would be its parent's lifetime peak, so refused
    monkeypatch.setattr(memory_mod, "_CLEAR_REFS", tmp_path / "no" / "clear_refs")
    with pytest.raises(isolated.IsolatedMemoryError, match="cannot reset the RSS high-water "
                       "mark .*run without --memory-isolated"):
        isolated._measure_in_child(catalog, request)


def test_isolated_probe_errors_carry_the_end_of_a_long_stderr_not_its_start():
    # a long warning log before the traceback: the cause is at the end
    import subprocess
    import sys
    import tempfile

    from defectbench.measure.isolated import IsolatedMemoryError, IsolatedMemoryProbe

    noisy = "import sys\nsys.stderr.write('warning\\n' * 2000 + 'the real cause'); sys.exit(3)\n"
    probe = IsolatedMemoryProbe.__new__(IsolatedMemoryProbe)
    probe._stderr = tempfile.TemporaryFile(mode="w+")
    probe._process = subprocess.Popen([sys.executable, "-c", noisy], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=probe._stderr, text=True)
    probe._process.wait()
    assert probe._stderr_tail().endswith("the real cause")
    with pytest.raises(IsolatedMemoryError, match=r"(?s)status 3\): .*warning\nthe real cause$"):
        probe.measure("v", "fp32", "cpu", 1, 1)
    probe.close()


def test_counting_macs_leaves_the_model_in_the_mode_it_was_in_and_counts_in_eval():
    # dropout and batch norm must run as in inference, and the caller's mode come back
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    seen = []
    model.register_forward_hook(lambda module, inputs, output: seen.append(module.training))
    count_macs(model.eval(), 4)
    assert seen == [False] and not model.training
    count_macs(model.train(), 4)
    assert seen == [False, False] and model.training


def test_matmul_peak_is_2n3_flops_over_the_best_of_a_few_timings(monkeypatch):
    import types

    import defectbench.measure.compute as compute

    # five calls lasting 3, 1, 2, 4 and 5 s on a simulated clock: the best is 1 s
    clock = iter([0.0, 3.0, 10.0, 11.0, 20.0, 22.0, 30.0, 34.0, 40.0, 45.0])
    monkeypatch.setattr(compute, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    assert compute._best_seconds(lambda: None) == 1.0
    monkeypatch.setattr(compute, "_best_seconds", lambda call: 0.5)
    monkeypatch.setattr(compute, "_ort_matmul_peak_gflops", lambda n, threads: 0.0)
    compute.matmul_peak_gflops.cache_clear()
    try:
        # a 100 x 100 matmul is 2 * 100^3 FLOP (a multiply and an add per MAC): in 0.5 s,
        # 0.004 GFLOP/s
        assert compute.matmul_peak_gflops("float32", "cpu", 100) == pytest.approx(0.004)
        assert compute.matmul_peak_gflops("bfloat16", "cpu", 100) == pytest.approx(0.004)
    finally:
        compute.matmul_peak_gflops.cache_clear()


def test_cpu_identity_of_an_x86_core_records_vendor_model_and_stepping():
    # two processors of one name and family differ by model number or stepping
    text = ("processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\n"
            "model name\t: Intel Xeon\nstepping\t: 8\nflags\t\t: fpu avx2\n")
    identity = cpu_identity(text)
    assert {k: identity[k] for k in ("name", "vendor", "family", "model", "stepping")} == {
        "name": "Intel Xeon", "vendor": "GenuineIntel", "family": "6", "model": "143",
        "stepping": "8"}


def test_isolated_memory_on_cuda_is_refused_before_asking_the_probe():
    # a forked child's RSS says nothing of CUDA allocations: the suite measures those itself
    from defectbench.measure.isolated import IsolatedMemoryError, IsolatedMemoryProbe

    probe = IsolatedMemoryProbe.__new__(IsolatedMemoryProbe)  # no process: never asked
    with pytest.raises(IsolatedMemoryError, match=r"cpu only, not 'cuda'.*in-process"):
        probe.measure("v", "fp32", "cuda", 1, 1)
