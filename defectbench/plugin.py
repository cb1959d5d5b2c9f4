"""pytest plugin: the options, parametrization, fixtures and JSON hooks of the benchmark suite.

Loaded by the repository's root `conftest.py` (`pytest_plugins`). It only parametrizes tests
that request the `quality_case` / `perf_case` parameters; its options (and their DEFECTBENCH_*
variables) are checked at every session start, the unit tests' included, so a stale
variable is named at once rather than after a zoo build.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from defectbench import suite as suite_mod
from defectbench.errors import ZooBuildError
from defectbench.io import expand_home

_OPTIONS = (
    # (option, env var, default, help)
    ("--zoo-profile", "DEFECTBENCH_PROFILE", "quick", "zoo profile: smoke, quick or full"),
    ("--zoo-dir", "DEFECTBENCH_ZOO", None,
     "zoo directory (default $XDG_CACHE_HOME/defectbench/zoo, else ~/.cache/defectbench/zoo)"),
    ("--variants", "DEFECTBENCH_VARIANTS", "*", "comma-separated globs of variant names"),
    ("--precisions", "DEFECTBENCH_PRECISIONS", ",".join(suite_mod.PRECISIONS),
     "comma-separated"),
    ("--devices", "DEFECTBENCH_DEVICES", ",".join(suite_mod.DEVICES),
     f"comma-separated: {', '.join(suite_mod.DEVICES)}"),
    ("--batch-sizes", "DEFECTBENCH_BATCH_SIZES", ",".join(map(str, suite_mod.DEFAULT_BATCHES)),
     "comma-separated integers"),
    ("--threads", "DEFECTBENCH_THREADS", None,
     "intra-op threads for torch and ONNX Runtime, and for a zoo build the suite starts "
     "(default torch's)"),
    ("--budgets", "DEFECTBENCH_BUDGETS", None,
     "budgets TOML (default fixtures/budgets.toml; budgets-smoke.toml for the smoke profile)"),
    ("--speed-targets", "DEFECTBENCH_SPEED_TARGETS", None,
     "speed targets TOML (default fixtures/speed_targets.toml; speed_targets-smoke.toml for "
     "the smoke profile)"),
    ("--latency-seconds", "DEFECTBENCH_LATENCY_SECONDS", "3",
     "time budget per latency case; rounds = budget / call time, 5..200 (survey 3..200)"),
    ("--memory-isolated", "DEFECTBENCH_MEMORY_ISOLATED", "0",
     "1: also measure each CPU artifact's RAM on its own (a forked child loads it and runs "
     "the largest selected batch); adds seconds per artifact, more for PT2E"),
    ("--teacher", "DEFECTBENCH_TEACHER", None,
     "the teacher's timm architecture (default tf_efficientnet_lite2)"),
    ("--teacher-weights", "DEFECTBENCH_TEACHER_WEIGHTS", None,
     "a local weights file for the teacher (.safetensors or torch checkpoint)"),
    ("--teacher-size", "DEFECTBENCH_TEACHER_SIZE", None,
     "pixels the teacher is fine-tuned at (default: the profile's, or a custom teacher's own)"),
)
# options every process must see alike (the zoo build and the memory probe are processes of
# their own, and read the teacher through get_profile): set into the environment they inherit
_EXPORTED = ("--teacher", "--teacher-weights", "--teacher-size")
_SUITE = pytest.StashKey["suite_mod.Suite"]()
_SELECTION = pytest.StashKey["suite_mod.Selection"]()
_CATALOG = pytest.StashKey[object]()
_EXPORTED_BEFORE = pytest.StashKey[dict]()
_STARTED = pytest.StashKey[float]()  # when the session was configured (wall clock)
# test function node id -> why its cases could not be generated (see pytest_generate_tests)
_GENERATE_ERRORS = pytest.StashKey[dict]()
_GATED = pytest.StashKey[set]()  # the quality cases whose gate test ran (not only scored)
_FINISHED = pytest.StashKey[int]()  # tests that ran to the end of their teardown
_STOPPED_EARLY = pytest.StashKey[dict]()  # why selected tests never ran (-x, --maxfail...)
_STOPPED_EARLY_IN_JSON = pytest.StashKey[bool]()  # ...and the JSON written says so
_CASES_SELECTED = pytest.StashKey[bool]()  # the selection holds a suite or survey case
# the parameters the suite's and the survey's tests are recognised by
_CASE_PARAMS = frozenset({"quality_case", "perf_case", "survey_case", "speed_target"})


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("defectbench", "defectbench benchmark suite")
    for option, env, default, help_text in _OPTIONS:
        # a default that is computed (None here) is described in the help text itself
        default_text = f"; default {default}" if default is not None else ""
        group.addoption(option, default=None, help=f"{help_text}; env {env}{default_text}")


def option(config: pytest.Config, name: str) -> str | None:
    """The command line's value, else the environment variable's (an empty one counts as
    unset, as shells export them), else the default. An empty value on the command line is
    refused: `--budgets ""` (an unset shell variable) must not quietly mean the default."""
    for opt, env, default, _ in _OPTIONS:
        if opt == name:
            value = config.getoption(opt.lstrip("-").replace("-", "_"))
            if value is not None and not value.strip():
                raise pytest.UsageError(
                    f"{opt} is empty; give it a value, or leave it out for the default "
                    f"(or ${env})")
            if value is not None:
                return value
            return os.environ.get(env) or default
    raise KeyError(name)


def _from_env(config: pytest.Config, name: str) -> str:
    """' (from $VAR)' when the option's value came from its environment variable: a stale
    variable exported long ago is named, not an option the user never gave."""
    env = next(env for opt, env, *_ in _OPTIONS if opt == name)
    given = config.getoption(name.lstrip("-").replace("-", "_"))
    return f" (from ${env}={os.environ[env]!r})" if given is None and os.environ.get(env) else ""


def _selection(config: pytest.Config) -> suite_mod.Selection:
    from defectbench.errors import ConfigError, UnknownNameError

    if _SELECTION not in config.stash:
        fields = {}
        for key, name in (("variants", "--variants"), ("precisions", "--precisions"),
                          ("devices", "--devices"), ("batches", "--batch-sizes")):
            text = option(config, name)
            try:
                value = (suite_mod.parse_batches(text) if key == "batches"
                         else suite_mod.parse_list(text, key))
                suite_mod.Selection(**{key: value})  # this one field checked
            except (ConfigError, UnknownNameError) as exc:
                raise type(exc)(f"{exc}{_from_env(config, name)}") from None
            fields[key] = value
        config.stash[_SELECTION] = suite_mod.Selection(**fields)
    return config.stash[_SELECTION]


def _threads(config: pytest.Config) -> int:
    import torch

    value = option(config, "--threads")
    return _parse_threads(value) if value else torch.get_num_threads()


def _parse_threads(value: str) -> int:
    from defectbench.errors import ConfigError
    from defectbench.zoo.cli import MAX_THREADS  # light: no torch, no plugin import

    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise ConfigError(
            f"--threads (DEFECTBENCH_THREADS) must be a positive integer, got {value!r}"
        )
    if int(value) > MAX_THREADS:
        # the zoo build the suite may start takes no more, and would fail with exit 2
        raise ConfigError(
            f"--threads (DEFECTBENCH_THREADS) must be at most {MAX_THREADS} (what `defectbench "
            f"zoo build --threads` takes; this machine has {os.cpu_count()} cores), got {value!r}"
        )
    return int(value)


def latency_seconds(config: pytest.Config) -> float:
    """--latency-seconds: the time budget of one latency case, a positive number."""
    import math

    value = option(config, "--latency-seconds")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        from defectbench.errors import ConfigError

        raise ConfigError(
            "--latency-seconds (DEFECTBENCH_LATENCY_SECONDS) must be a positive number of "
            f"seconds, e.g. 3, got {value!r}"
        )
    return seconds


def pytest_configure(config: pytest.Config) -> None:
    from defectbench.errors import ConfigError, UnknownNameError
    from defectbench.zoo.profiles import get_profile

    config.stash[_STARTED] = time.time()
    exported = {}
    for name in _EXPORTED:
        value = config.getoption(name.lstrip("-").replace("-", "_"))
        if value is not None:
            env = next(env for opt, env, *_ in _OPTIONS if opt == name)
            exported[env] = os.environ.get(env)
            # the processes started later resolve a relative path against their own cwd
            os.environ[env] = (os.path.abspath(os.path.expanduser(value))
                               if name == "--teacher-weights" and value.strip() else value)
    config.stash[_EXPORTED_BEFORE] = exported  # restored at unconfigure
    _refuse_unknown_variables()
    for name, *_ in _OPTIONS:
        option(config, name)  # an empty value, refused before anything else
    try:
        # options are checked once, here: a bad value found by each perf case would fail
        # every case with the same error (or, for 0 seconds, surface as a speed target's)
        latency_seconds(config)
        _memory_isolated(config)
        value = option(config, "--threads")
        threads = _parse_threads(value) if value else None
        _selection(config)  # --variants, --precisions, --devices, --batch-sizes
        get_profile(option(config, "--zoo-profile"))
        _zoo_root(config)  # a file: found now, not by the zoo build the suite starts
        _refuse_xdist_with_json(config)
        _check_benchmark_json_path(config)
    except (ConfigError, UnknownNameError) as exc:  # pytest's own "ERROR: ..." line
        raise pytest.UsageError(str(exc)) from None
    if threads:
        import torch

        # set once for the session, before any case runs: the survey times models without
        # ever building the suite, and every result records this count as its "threads"
        torch.set_num_threads(threads)


def _refuse_unknown_variables() -> None:
    """A DEFECTBENCH_* variable nothing reads is a misspelt one: `DEFECTBENCH_PROFLE=smoke`
    was ignored without a word, and the suite started a 30-minute `quick` build."""
    import difflib

    known = {env for _, env, *_ in _OPTIONS}
    unknown = sorted(name for name in os.environ
                     if name.startswith("DEFECTBENCH_") and name not in known)
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
        hints.append(f"${name}" + (f" (did you mean ${close[0]}?)" if close else ""))
    raise pytest.UsageError(
        f"defectbench reads no {', '.join(hints)}; unset {'it' if len(unknown) == 1 else 'them'}"
        f" or correct the name; it reads {', '.join('$' + env for env in sorted(known))}"
    )


def _refuse_xdist_with_json(config: pytest.Config) -> None:
    """pytest-xdist workers run with pytest-benchmark disabled and each hold their own
    verdicts: every worker wrote the JSON over the others', and the file kept one worker's
    quality results and no timings."""
    from defectbench.errors import ConfigError

    workers = config.getoption("numprocesses", default=None)
    if workers and workers != "0" and config.getoption("benchmark_json", default=None):
        raise ConfigError(
            f"-n {workers} (pytest-xdist) with --benchmark-json: xdist disables the timings in "
            "its workers and each worker holds only its own verdicts, so the JSON would miss "
            "most of the run; run the suite without -n"
        )


def _check_benchmark_json_path(config: pytest.Config) -> None:
    """A `--benchmark-json` path that cannot be written is found now, not after every case
    has run (the results would be lost with a traceback): a folder, or a place where no file
    can be created."""
    import tempfile

    from defectbench.errors import ConfigError

    path = config.getoption("benchmark_json", default=None)
    # nothing is written when only listing (--collect-only) or asking for --help
    if (not path or hasattr(config, "workerinput") or config.option.collectonly
            or config.getoption("help", default=False)):
        return
    if str(path).startswith("~"):
        # `--benchmark-json=~/out.json`: no shell expands a ~ after `=`, and the mkdir below
        # made a folder literally named `~` in the working directory
        raise ConfigError(
            f"--benchmark-json {path} starts with `~`, which the shell did not expand (it does "
            "not after `=`); write `--benchmark-json ~/...` with a space, or use $HOME"
        )
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"--benchmark-json {path} is a folder; name a file, e.g. "
                          f"{path / 'out.json'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # the JSON is written as a temporary file beside it, then renamed: try exactly that
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(
            f"--benchmark-json {path} cannot be written ({exc.strerror or exc}); choose a "
            "writable place for it"
        ) from None


def _zoo_root(config: pytest.Config) -> Path:
    """--zoo-dir, else DEFECTBENCH_ZOO, else the cache folder, with `~` expanded as `zoo
    build` expands it: the suite hands this folder to a `zoo build` process, which built in
    the home folder while the suite read a folder named `~`. A file is refused, with the fix
    (the build process found it only once the session had started)."""
    from defectbench.errors import ConfigError
    from defectbench.zoo.store import default_zoo_root

    value = option(config, "--zoo-dir")
    source = f"--zoo-dir {value}{_from_env(config, '--zoo-dir')}"
    root = (expand_home(value, f"--zoo-dir{_from_env(config, '--zoo-dir')}") if value
            else default_zoo_root())
    if root.exists() and not root.is_dir():
        raise ConfigError(
            f"{source if value else f'the default zoo folder {root}'} is a file, not a "
            "folder; give --zoo-dir (or DEFECTBENCH_ZOO) a folder for the zoo, or move the "
            "file away"
        )
    return root


def _catalog(config: pytest.Config):
    if _CATALOG not in config.stash:
        from defectbench.errors import DefectbenchError
        from defectbench.zoo.catalog import Catalog

        try:
            config.stash[_CATALOG] = Catalog(_zoo_root(config), option(config, "--zoo-profile"))
        except DefectbenchError as exc:  # a broken fixture: checked once, not per module
            config.stash[_CATALOG] = exc
    if isinstance(config.stash[_CATALOG], Exception):
        raise config.stash[_CATALOG]
    return config.stash[_CATALOG]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize the suite's tests. A project error here (a broken fixture, a --variants
    glob matching nothing) would be a collection error of every module, each with its
    traceback; it is kept and said once by pytest_collection_modifyitems instead, before
    anything runs, if a test it concerns is still selected."""
    from defectbench.errors import DefectbenchError

    try:
        _generate_tests(metafunc)
    except DefectbenchError as exc:
        errors = metafunc.config.stash.setdefault(_GENERATE_ERRORS, {})
        errors[metafunc.definition.nodeid] = str(exc)


_SUITE_PARAMETERS = {"quality_case", "perf_case", "speed_target"}


def _refuse_generate_errors(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse the run with the first generation error if anything it concerns could be
    selected: an item of a failed function, any other suite test (say a speed target when a
    glob matched nothing), or nothing at all (a -k naming cases that were never generated,
    which would otherwise end as "no tests ran"). Only a selection without suite tests (the
    survey, `-m slow`) runs on."""
    errors = config.stash.get(_GENERATE_ERRORS, {})
    if not errors:
        return
    hit = [errors[key] for item in items
           if (key := f"{item.parent.nodeid}::{getattr(item, 'originalname', item.name)}")
           in errors]
    suite_items = [i for i in items if _SUITE_PARAMETERS & set(getattr(i, "fixturenames", ()))]
    if hit or suite_items or not items:
        raise pytest.UsageError(hit[0] if hit else next(iter(errors.values())))


def _generate_tests(metafunc: pytest.Metafunc) -> None:
    if "survey_case" in metafunc.fixturenames:
        _parametrize_survey(metafunc)
        return
    if "speed_target" in metafunc.fixturenames:
        _parametrize_speed_targets(metafunc)
        return
    wanted = [n for n in ("quality_case", "perf_case") if n in metafunc.fixturenames]
    if not wanted:
        return
    catalog = _catalog(metafunc.config)  # names and capabilities only; nothing is built here
    selection = _selection(metafunc.config)
    make = suite_mod.quality_cases if wanted[0] == "quality_case" else suite_mod.perf_cases
    # (an empty list here is refused once, in pytest_collection_modifyitems)
    params = [
        pytest.param(case, id=case.id, marks=_case_marks(catalog, case))
        for case in make(catalog, selection)
    ]
    metafunc.parametrize(wanted[0], params)


def _gpu_marks() -> list:
    from defectbench.runtime.precision import CUDA_SKIP_REASON, cuda_available

    return [pytest.mark.gpu, pytest.mark.skipif(not cuda_available(), reason=CUDA_SKIP_REASON)]


def _case_marks(catalog, case) -> list:
    """gpu marks for CUDA cases, and a skip naming the fix when this host lacks the runtime
    the case needs (TensorRT for ONNX fp16/int8 on CUDA)."""
    marks = _gpu_marks() if case.device == "cuda" else []
    reason = catalog.unavailable_reason(case.variant, case.precision, case.device)
    if reason:
        marks.append(pytest.mark.skip(reason=reason))
    return marks


def _parametrize_survey(metafunc: pytest.Metafunc) -> None:
    from defectbench.survey import survey_cases

    selection = _selection(metafunc.config)
    cases = survey_cases(selection.devices, selection.precisions, selection.batches)
    metafunc.parametrize("survey_case", [
        pytest.param(c, id=c.id, marks=_gpu_marks() if c.device == "cuda" else []) for c in cases
    ])


@pytest.fixture
def measure_survey_latency(survey_case, benchmark, request, tmp_path_factory):
    """Time one untrained architecture; results are marked latency_only."""
    from defectbench.measure.latency import LatencyStats, rounds_for
    from defectbench.measure.memory import measure_peak
    from defectbench.survey import survey_predictor

    config = request.config

    def run() -> dict:
        import time

        import numpy as np

        case = survey_case
        # one folder for the session: each architecture's INT8 file is made once, not per batch
        workdir = tmp_path_factory.getbasetemp() / "survey"
        workdir.mkdir(exist_ok=True)
        predictor = survey_predictor(case, workdir)
        rng = np.random.default_rng(0)
        batch = rng.standard_normal((case.batch, 3, case.img_size, case.img_size),
                                    dtype=np.float32)
        # the first call (compile, lazy init, buffers) is the one whose memory counts, as in the
        # suite's cases: measured after the timed rounds, it read 0 on CPU (pages reused)
        memory = measure_peak(lambda: predictor.predict_logits(batch), case.device)
        start = time.perf_counter()
        predictor.predict_logits(batch)
        warm = time.perf_counter() - start
        rounds = rounds_for(warm, latency_seconds(config), lo=3)
        benchmark.pedantic(predictor.predict_logits, args=(batch,), rounds=rounds,
                           warmup_rounds=1, iterations=1)
        if benchmark.stats is None:
            return {}
        latency = LatencyStats.from_seconds(list(benchmark.stats.stats.data))
        info = {
            "defectbench": suite_mod.SCHEMA, "variant": f"survey.{case.arch}",
            "precision": case.precision, "device": case.device, "batch": case.batch,
            "runtime": predictor.runtime, "threads": _threads(config), "latency_only": True,
            "img_size": case.img_size, "latency_ms": latency.to_dict(),
            "throughput_ips": latency.throughput(case.batch), "memory": memory.to_dict(),
            "quality": None,
        }
        benchmark.extra_info.update(info)
        return info

    return run


@pytest.fixture(scope="session")
def defectbench_suite(request: pytest.FixtureRequest) -> suite_mod.Suite:
    """The session's suite; builds the zoo for the chosen profile first when it is missing."""
    config = request.config
    if _SUITE not in config.stash:
        catalog = _catalog(config)
        wanted = (suite_mod.select_names(catalog.names, _selection(config).variants)
                  + [catalog.profile.teacher])
        capture = config.pluginmanager.getplugin("capturemanager")
        try:
            with capture.global_and_fixture_disabled():  # show build progress live
                _build_missing(catalog, wanted)
        except ZooBuildError as exc:
            # once for the session, not the same error under every case
            pytest.exit(f"ZooBuildError: {exc}", returncode=pytest.ExitCode.TESTS_FAILED)
        config.stash[_SUITE] = suite_mod.Suite(catalog, _budgets_path(config, catalog))
    return config.stash[_SUITE]


def _budgets_path(config: pytest.Config, catalog) -> Path:
    return Path(option(config, "--budgets") or profile_file("budgets", catalog.profile.name))


@pytest.hookimpl(trylast=True)  # after -m / -k deselection: judge what will run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Load and check the budgets file once collection is done and before anything runs (the
    zoo is built by the first case): a typo in its path or a budget that matches nothing
    would otherwise surface only after the build, under every case."""
    from defectbench.errors import DefectbenchError

    # before any refusal: the terminal summary's section is for runs that select cases
    config.stash[_CASES_SELECTED] = any(
        _CASE_PARAMS & set(getattr(item, "fixturenames", ())) for item in items)
    _refuse_generate_errors(config, items)
    _refuse_benchmark_only_with_gates(config, items)
    suite_cases = ("quality_case", "perf_case")
    if any(n in getattr(item, "fixturenames", ()) for item in items for n in suite_cases):
        try:
            catalog = _catalog(config)  # names only; nothing is built here
            # an empty selection would be an empty parameter set: skipped, exit 0, nothing
            # judged (said here with the builds there are, before the general check below)
            suite_mod.check_selection_has_cases(catalog, _selection(config))
            if any("perf_case" in getattr(item, "fixturenames", ()) for item in items):
                # only timed cases take batches: a quality-only run (`-m quality`) is not
                # refused over a stray DEFECTBENCH_BATCH_SIZES
                _check_batches_fit(config, len(catalog.fixture.split("val")))
            suite_mod.load_checked_budgets(_budgets_path(config, catalog), catalog)
        except DefectbenchError as exc:  # pytest's own "ERROR: ..." line, once
            raise pytest.UsageError(str(exc)) from None
    if not config.option.collectonly:  # listing what a GPU host would run is fine here
        _refuse_a_selection_that_only_skips(config, items)


def _check_batches_fit(config: pytest.Config, val_images: int) -> None:
    from defectbench.errors import ConfigError

    try:
        suite_mod.check_batches_fit(_selection(config).batches, val_images,
                                    option(config, "--batch-sizes"))
    except ConfigError as exc:
        raise ConfigError(f"{exc}{_from_env(config, '--batch-sizes')}") from None


_HOST_FIX = "run them where they can run, or select cases this host has (--devices cpu)"


def _skip_reason(item: pytest.Item, config: pytest.Config) -> tuple[str, str] | None:
    """Why `item` will be skipped before it measures anything, and the fix, or None: by its
    own marks (a host without CUDA or TensorRT), or by pytest-benchmark (--benchmark-skip
    skips whatever takes its `benchmark` fixture)."""
    if (config.getoption("benchmark_skip", default=False)
            and "benchmark" in getattr(item, "fixturenames", ())):
        return ("(--benchmark-skip skips every timed case)",
                "drop --benchmark-skip, or select the quality gates (-m quality) beside it")
    for mark in item.iter_markers():
        if mark.name == "skip" or (mark.name == "skipif" and mark.args and mark.args[0] is True):
            return f"on this host ({mark.kwargs.get('reason', 'skipped')})", _HOST_FIX
    return None


def _refuse_a_selection_that_only_skips(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A run whose every suite case skips (`--devices cuda`, `tox -e gpu`, on a host whose
    CUDA or TensorRT does not load; a speed target's id given alone) would pass having
    measured and judged nothing."""
    cases = [i for i in items if _CASE_PARAMS & set(getattr(i, "fixturenames", ()))]
    # a speed target re-times two cases benchmarked earlier in the session, and skips
    # ("not measured") when this selection does not time both
    timed = set() if config.getoption("benchmark_disable", default=False) else {
        i.callspec.params["perf_case"] for i in cases
        if "perf_case" in i.fixturenames and not _skip_reason(i, config)}
    reasons = []
    for item in cases:
        reason = _skip_reason(item, config)
        if not reason and "speed_target" in item.fixturenames:
            target = item.callspec.params["speed_target"]
            untimed = [c.id for c in target.cases if c not in timed]
            if untimed:
                reason = (f"(speed target {target.name!r} needs test_inference of "
                          f"{', '.join(untimed)} timed in the same run)",
                          "select those cases too (`pytest benchmarks --variants ...` runs "
                          "test_latency.py before the targets), without --benchmark-disable")
        reasons.append(reason)
    if cases and all(reasons):
        why, fix = reasons[0]
        raise pytest.UsageError(
            f"every one of the {len(cases)} selected benchmark cases would be skipped {why}, "
            f"so the run would pass having measured and judged nothing; {fix}"
        )


def _refuse_benchmark_only_with_gates(config: pytest.Config, items: list[pytest.Item]) -> None:
    """pytest-benchmark's --benchmark-only skips every test without its `benchmark` fixture:
    the recall gates and speed targets would be skipped and a failing variant would pass."""
    if not config.getoption("benchmark_only", default=False):
        return
    gates = [item.nodeid for item in items
             if {"quality_case", "speed_target"} & set(getattr(item, "fixturenames", ()))]
    if gates:
        raise pytest.UsageError(
            f"--benchmark-only would skip the {len(gates)} recall gates and speed targets "
            f"selected (e.g. {gates[0]}): pytest-benchmark skips every test that takes no "
            "`benchmark` fixture, so a variant that breaks a budget would pass. Drop "
            "--benchmark-only (the gates run beside the timings), or deselect the gates "
            "explicitly to time without them: -m \"perf and not slow\" -k \"not "
            "test_speed_target\" (a -m replaces the default, which keeps out the slow survey)"
        )


def _build_missing(catalog, wanted: list[str]) -> None:
    """Build what the session needs and the zoo lacks, in a process of its own: the build
    tunes the allocator for training (`defectbench.train.allocator`) and grows a heap of
    gigabytes, and neither may carry over into the process whose latency and memory the
    suite then measures."""
    import subprocess
    import sys

    import torch

    from defectbench.zoo.build import variants_to_build

    missing = variants_to_build(catalog.profile, catalog.store.root, wanted)
    if not missing:
        return
    command = [sys.executable, "-m", "defectbench.cli", "zoo", "build",
               "--profile", catalog.profile.name, "--zoo", str(catalog.store.root),
               # the session's thread count: a recipe's weights depend on it (`built_on`)
               "--threads", str(torch.get_num_threads()), "--variants", ",".join(missing)]
    status = subprocess.run(command, check=False).returncode
    if status != 0:
        raise ZooBuildError(
            f"building the {catalog.profile.name!r} zoo failed (exit status {status}; its "
            "output is above). Fix that and rerun: finished variants are kept, and "
            f"{catalog.store.rebuild_command()} resumes the rest"
        )


def profile_file(stem: str, profile: str) -> Path:
    """`fixtures/<stem>-<profile>.toml` where a profile has its own, else `fixtures/<stem>.toml`."""
    from defectbench.data.fixture import default_fixture_dir

    fixtures = default_fixture_dir().parent
    own = fixtures / f"{stem}-{profile}.toml"
    return own if own.is_file() else fixtures / f"{stem}.toml"


def _parametrize_speed_targets(metafunc: pytest.Metafunc) -> None:
    profile = option(metafunc.config, "--zoo-profile")
    path = Path(option(metafunc.config, "--speed-targets")
                or profile_file("speed_targets", profile))
    catalog = _catalog(metafunc.config)  # names and capabilities only; nothing is built here
    targets = suite_mod.load_speed_targets(path, catalog.profile.teacher)
    # refused before anything runs: a misspelt variant would otherwise be skipped as
    # "not measured" in every run
    suite_mod.check_speed_targets_apply(targets, catalog, str(path),
                                        _selection(metafunc.config).batches)
    # a CUDA target carries the gpu marks of its cases: `tox -e gpu` (-m gpu) selects it, and
    # a host without CUDA skips it saying so, not as "not measured"
    metafunc.parametrize(
        "speed_target",
        [pytest.param(t, id=t.name, marks=_gpu_marks() if t.device == "cuda" else [])
         for t in targets],
    )


@pytest.fixture
def quality(defectbench_suite, quality_case, request):
    """The quality result of this case (scored on `val`, budgets judged)."""
    result = defectbench_suite.evaluate(quality_case)
    request.config.stash.setdefault(_GATED, set()).add(quality_case)
    return result


@pytest.fixture
def measure_latency(defectbench_suite, perf_case, benchmark, request):
    """Call it to time this case with pytest-benchmark and fill `extra_info`."""
    from defectbench.measure.latency import rounds_for

    config = request.config

    def run() -> dict:
        import time

        predictor = defectbench_suite.predictor(perf_case)
        batch = defectbench_suite.perf_batch(perf_case)
        # the first call at this batch size (lazy init, compile, allocations) sets the memory
        # high-water mark; later calls reuse what it allocated
        memory = defectbench_suite.memory(perf_case, batch)
        # the round count comes from a warm call: the first one includes compiling and
        # engine builds and would leave compiled cases with the 5-round minimum
        start = time.perf_counter()
        predictor.predict_logits(batch)
        warm = time.perf_counter() - start
        isolated = None
        if (_memory_isolated(config) and perf_case.device == "cpu"
                and perf_case.batch == max(_selection(config).batches)):
            isolated = defectbench_suite.isolated_memory(perf_case, _threads(config))
        rounds = rounds_for(warm, latency_seconds(config))
        # scored before timing: pytest-benchmark records a case as soon as it is timed, so a
        # failure or Ctrl-C in the `val` pass after it left a timing without its extra_info
        defectbench_suite.evaluate(perf_case)
        benchmark.pedantic(predictor.predict_logits, args=(batch,), rounds=rounds,
                           warmup_rounds=2, iterations=1)
        if benchmark.stats is None:  # --benchmark-disable: nothing was timed
            return {}
        info = defectbench_suite.perf_extra_info(
            perf_case, list(benchmark.stats.stats.data), memory, _threads(config)
        )
        if isolated:
            info["memory"]["isolated"] = isolated
        benchmark.extra_info.update(info)
        return info

    return run


def check_timings(info: dict) -> None:
    """Fail the test unless a timed row's median latency and throughput are positive, finite
    numbers: the suite's and the survey's rows alike, so that a zero or NaN timing cannot
    pass as a measurement."""
    import math

    p50, throughput = info["latency_ms"]["p50"], info["throughput_ips"]
    timed = all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0
                for v in (p50, throughput))
    if not timed:
        pytest.fail(
            f"{info.get('variant')} at batch {info.get('batch')} was not timed: p50 latency "
            f"{p50!r} ms and throughput {throughput!r} images/s must both be positive, finite "
            "numbers",
            pytrace=False,
        )


def not_measured_reason(config: pytest.Config, missing: list[str]) -> str:
    """Why a speed target was skipped as not measured, and the fix: under --benchmark-disable
    its cases ran untimed, and "run test_latency.py for those cases" sent the user after
    cases that had run."""
    cases = ", ".join(missing)
    if config.getoption("benchmark_disable", default=False):
        return (f"not measured in this run: {cases}; --benchmark-disable times nothing, so "
                "no target can be judged: run without it")
    return (f"not measured in this run: {cases}; run test_latency.py for those cases in the "
            "same session")


def _memory_isolated(config: pytest.Config) -> bool:
    value = option(config, "--memory-isolated")
    if value not in ("0", "1"):
        from defectbench.errors import ConfigError

        raise ConfigError(
            f"--memory-isolated (DEFECTBENCH_MEMORY_ISOLATED) must be 0 or 1, got {value!r}"
        )
    return value == "1"


def pytest_sessionstart(session: pytest.Session) -> None:
    _refuse_a_comparison_that_loads_nothing(session.config)


def _refuse_a_comparison_that_loads_nothing(config: pytest.Config) -> None:
    """pytest-benchmark only warns when `--benchmark-compare=NAME` matches no saved run, and
    `--benchmark-compare-fail` then stops the session at its very end, after every case has
    run. Its runs are saved as `NNNN_NAME.json` and NAME is matched as a prefix, so the
    natural `--benchmark-save=baseline` / `--benchmark-compare=baseline` pair never matches:
    refuse that before anything runs, with the spelling that does."""
    bench = getattr(config, "_benchmarksession", None)
    if bench is None or not bench.compare or bench.compared_mapping:
        return
    if bench.compare is True and not bench.compare_fail:
        return  # "the latest saved run", and none yet: pytest-benchmark's warning is enough
    from pytest_benchmark.storage.file import FileStorage

    asked = "the latest saved run" if bench.compare is True else repr(bench.compare)
    machine = getattr(bench.storage, "default_machine_id", None) or "this machine"
    save_first = ("save a baseline on this machine class first (--benchmark-save=NAME; on CI, "
                  "keep the --benchmark-storage folder between runs), then compare with "
                  "--benchmark-compare='*_NAME'")
    if bench.compare is True:
        why = f"no run is saved for {machine}: {save_first}"
    elif isinstance(bench.storage, FileStorage) and bench.storage.query(f"*_{bench.compare}"):
        # file storage only: Elasticsearch storage matches ids, and its query takes no glob
        why = ("a run saved with --benchmark-save=NAME is stored as NNNN_NAME.json and the "
               "value is matched against the start of that name: compare with "
               f"--benchmark-compare='*_{bench.compare}' (or its number, e.g. 0001)")
    else:
        why = f"nothing by that name is saved for {machine}: {save_first}"
    raise pytest.UsageError(
        f"--benchmark-compare: {asked} matches no saved run in {bench.storage}; {why}. "
        "`pytest-benchmark list` shows the saved runs"
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int):
    """Keep the last finished run's `--benchmark-json` when this one was interrupted (a
    partial file would read as complete); otherwise write pytest-benchmark's JSON atomically,
    and write it for a run that judged quality but timed nothing.

    pytest-benchmark writes its JSON only when something was benchmarked, so a quality-only
    gate (`-m quality`) would lose its verdicts. Its own hooks make the same document here,
    with an empty `benchmarks` list, before its wrapper declines to save (and, unless
    `--benchmark-disable` is given, warns "Not saving anything", which `-W error` would turn
    into an error before a later hook could write). `--benchmark-save` stores nothing then.
    """
    config = session.config
    path = config.getoption("benchmark_json", default=None)
    stopped = _stopped_early(session, exitstatus)
    if stopped:  # read by pytest_benchmark_update_json, called by the writes below
        config.stash[_STOPPED_EARLY] = stopped
    if exitstatus == pytest.ExitCode.INTERRUPTED:
        _keep_previous_json(config)
    else:
        _save_benchmark_json_atomically(config)
        _write_quality_only_json(config)
    result = yield
    _say_when_an_earlier_json_is_left(config, path)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    result = yield
    item.config.stash[_FINISHED] = item.config.stash.get(_FINISHED, 0) + 1
    return result


def _stopped_early(session: pytest.Session, exitstatus: int) -> dict | None:
    """Why some selected suite cases never ran, when tests did run and the session was then
    stopped (-x, --maxfail, `session.shouldstop`): the JSON of such a run holds part of the
    gates and would otherwise read as a complete run whose other cases were never selected.

    A session refused or broken at collection (a usage error, a collection error) ran
    nothing and writes nothing (or keeps the previous file): it did not stop early; neither
    did an interrupted one, whose JSON is not written either."""
    config = session.config
    if (config.option.collectonly or hasattr(config, "workerinput")
            or not config.stash.get(_CASES_SELECTED, False)
            or exitstatus in (pytest.ExitCode.USAGE_ERROR, pytest.ExitCode.INTERRUPTED)):
        return None
    reason = session.shouldfail or session.shouldstop
    selected, finished = len(session.items), config.stash.get(_FINISHED, 0)
    if not reason or finished == 0 or finished >= selected:
        return None
    return {
        "reason": reason if isinstance(reason, str) else "the session stopped early",
        "selected": selected,
        "not_run": selected - finished,
    }


def _say_when_an_earlier_json_is_left(config: pytest.Config, path) -> None:
    """A run that wrote nothing (every case failed to load, say) leaves an earlier run's
    `--benchmark-json` where this run's was asked for: say so, or a report made from it
    would read as this run's."""
    if not path or hasattr(config, "workerinput"):
        return
    path = Path(path)
    started = config.stash.get(_STARTED, None)
    # a second of slack for file systems with coarse timestamps
    if started is None or not path.is_file() or path.stat().st_mtime >= started - 1:
        return
    config.get_terminal_writer().line(
        f"defectbench: this run wrote nothing to {path}; the file there is an earlier run's",
        red=True, bold=True)


def _keep_previous_json(config: pytest.Config) -> None:
    """An interrupted run writes no `--benchmark-json`: the partial document would read as a
    complete run (a case timed but not scored, targets missing), and replace the last good
    file that a CI gate compares against."""
    bench = getattr(config, "_benchmarksession", None)
    if bench is None or not bench.json:
        return
    bench.logger.info(f"Interrupted: not writing {bench.json} (a partial run would read as a "
                      "complete one); the file from the last finished run, if any, is kept",
                      red=True)
    bench.json = None


def _save_benchmark_json_atomically(config: pytest.Config) -> None:
    """Route pytest-benchmark's `--benchmark-json` write through a temporary file and a rename.

    It writes the file in place (`open(path, "wb")`), so a run killed or out of disk while
    writing would leave a truncated JSON where the last good one was; a CI gate that keeps
    `out.json` between runs would then lose both.
    """
    bench = getattr(config, "_benchmarksession", None)
    if bench is None or not bench.json:
        return
    from pytest_benchmark.utils import safe_dumps

    from defectbench.io import atomic_write_text

    def save_json(output_json: dict) -> None:
        atomic_write_text(bench.json, safe_dumps(output_json, ensure_ascii=True, indent=4))
        bench.logger.info(f"Wrote benchmark data in: {bench.json}", purple=True)

    bench.save_json = save_json


def _write_quality_only_json(config: pytest.Config) -> None:
    bench = getattr(config, "_benchmarksession", None)
    suite = config.stash.get(_SUITE, None)
    if hasattr(config, "workerinput"):  # an xdist worker: its verdicts are not the run's
        return
    if bench is None or not bench.json or bench.benchmarks or suite is None or not suite.quality:
        return
    from pytest_benchmark.utils import safe_dumps

    from defectbench.io import atomic_write_text

    commit_info = config.hook.pytest_benchmark_generate_commit_info(config=config)
    config.hook.pytest_benchmark_update_commit_info(config=config, commit_info=commit_info)
    output_json = config.hook.pytest_benchmark_generate_json(
        config=config, benchmarks=[], include_data=True,
        machine_info=bench.get_machine_info(), commit_info=commit_info,
    )
    config.hook.pytest_benchmark_update_json(config=config, benchmarks=[],
                                             output_json=output_json)
    atomic_write_text(bench.json, safe_dumps(output_json, ensure_ascii=True, indent=4))
    bench.logger.info(f"Wrote the quality results in: {bench.json} (nothing was timed, so "
                      "pytest-benchmark itself saves nothing)", purple=True)
    # written: pytest-benchmark would otherwise warn "Not saving anything" about this file,
    # which -W error turns into a failed run
    bench.json = None


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """The gates' verdicts where a CI log ends: the short summary shows only test ids, and
    the failures section is pages above. Each failing budget is named with its case, value,
    bound and limit; then the speed targets, and whether the run stopped early."""
    if hasattr(config, "workerinput"):
        return
    if not config.stash.get(_CASES_SELECTED, False) and _SUITE not in config.stash:
        return  # no suite or survey case selected (the unit tests): nothing to add to pytest's
    lines = _gate_summary(config)
    stopped = config.stash.get(_STOPPED_EARLY, None)
    if stopped:
        # named only when this run's JSON was written and holds the mark
        path = (config.getoption("benchmark_json", default=None)
                if config.stash.get(_STOPPED_EARLY_IN_JSON, False) else None)
        lines.append((
            f"stopped early ({stopped['reason']}): {stopped['not_run']} of "
            f"{stopped['selected']} selected tests never ran"
            + (f"; {path} holds only what ran and says so under defectbench.stopped_early"
               if path else ""), {"red": True, "bold": True}))
    if not lines:
        return
    terminalreporter.write_sep("=", "defectbench gates")
    for text, markup in lines:
        terminalreporter.line(text, **markup)


def _gate_summary(config: pytest.Config) -> list[tuple[str, dict]]:
    suite = config.stash.get(_SUITE, None)
    if suite is None:
        return []
    red, green = {"red": True}, {"green": True}
    lines = []
    gated = config.stash.get(_GATED, set())
    judged = [(case, suite.quality[case]) for case in sorted(suite.quality) if case in gated]
    # no verdict: no budget applies, and test_quality.py fails the case (all([]) is True)
    failed = [(case, result) for case, result in judged
              if not result["passed"] or not result["verdicts"]]
    if judged:
        lines.append((f"quality: {len(judged) - len(failed)} of {len(judged)} cases pass "
                      f"every budget of {suite.budgets_path}", red if failed else green))
    for case, result in failed:
        if not result["verdicts"]:
            lines.append((f"  FAIL {case.id}: no budget applies to this variant; check "
                          f"{suite.budgets_path}", red))
        for verdict in result["verdicts"]:
            if not verdict["passed"]:
                # the message opens with the variant; the case id adds precision and device
                message = verdict["message"].removeprefix(f"{case.variant}: ")
                lines.append((f"  FAIL {case.id}: {message}", red))
    # scored for their timings' JSON by test_inference, judged by no gate in this run
    unjudged = [case for case in sorted(suite.quality)
                if case not in gated and not (suite.quality[case]["passed"]
                                              and suite.quality[case]["verdicts"])]
    if unjudged:
        lines.append((
            f"not gated in this run (test_quality.py not selected), but failing their budgets "
            f"in the JSON: {', '.join(case.id for case in unjudged)}", {"yellow": True}))
    results = suite.speed_results
    if results:
        measured = [r for r in results if r["measured"]]
        broken = [r for r in measured if not r["passed"]]
        lines.append((
            f"speed targets: {len(measured) - len(broken)} of {len(results)} pass"
            + (f", {len(broken)} fail" if broken else "")
            + (f", {len(results) - len(measured)} not measured"
               if len(measured) < len(results) else ""),
            red if broken else green))
        lines += [(f"  FAIL {r['message']}", red) for r in broken]
    return lines


def pytest_unconfigure(config: pytest.Config) -> None:
    suite = config.stash.get(_SUITE, None)
    if suite is not None:
        suite.close()
    for env, before in config.stash.get(_EXPORTED_BEFORE, {}).items():
        if before is None:
            os.environ.pop(env, None)
        else:
            os.environ[env] = before


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    from defectbench.measure.machine import machine_info as ours

    machine_info.update(ours())


def pytest_benchmark_update_json(config: pytest.Config, benchmarks, output_json: dict) -> None:
    suite = config.stash.get(_SUITE, None)
    if suite is not None:
        output_json["defectbench"] = suite_mod.json_section(suite)
    elif any(b.get("extra_info", {}).get("latency_only") for b in output_json["benchmarks"]):
        output_json["defectbench"] = suite_mod.survey_section()
    stopped = config.stash.get(_STOPPED_EARLY, None)
    if stopped and "defectbench" in output_json:
        # part of the selection never ran: a reader must not take the missing cases and
        # targets for ones the run did not select
        output_json["defectbench"]["stopped_early"] = stopped
        config.stash[_STOPPED_EARLY_IN_JSON] = True
    suite_mod.add_speedups(output_json["benchmarks"],
                           suite.catalog.profile.teacher if suite else suite_mod.TEACHER)
