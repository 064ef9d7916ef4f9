"""The benchmark scripts stay importable and their shared helpers correct (no timing asserted)."""

import importlib
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.stem for p in BENCH.glob("*.py") if not p.stem.startswith("_"))


@pytest.fixture(autouse=True)
def _on_path(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_imports_and_has_main(name):
    module = importlib.import_module(name)
    assert callable(module.main)
    assert module.__doc__ and f"benchmarks/{name}.py" in module.__doc__  # says how to run it


def test_print_table(capsys):
    from _bench import print_table

    print_table(["x", "y"], [["a", 1.23456], ["b", 12345.6]])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| x") and "1.23" in out[2] and "12,346" in out[3]


def test_timings_are_medians_of_the_timed_runs_only(monkeypatch):
    """A scripted clock: each call of a timed function takes a known number of seconds."""
    import types

    import _bench

    clock = types.SimpleNamespace(now=0.0)
    monkeypatch.setattr(_bench, "time", types.SimpleNamespace(perf_counter=lambda: clock.now))
    calls = []

    def takes(name, seconds):
        it = iter(seconds)

        def fn():
            calls.append(name)
            clock.now += next(it)
        return fn

    # warm-up 100 s (not timed), then 3, 1, 2: the median is 2
    assert _bench.median_seconds(takes("f", [100, 3, 1, 2]), repeats=3) == 2
    calls.clear()
    medians = _bench.interleaved({"a": takes("a", [50, 1, 5, 3]),
                                  "b": takes("b", [50, 10, 30, 20])}, repeats=3)
    assert medians == {"a": 3, "b": 20}
    assert calls == ["a", "b", "a", "b", "a", "b", "a", "b"]  # warm-ups, then turn by turn


def test_every_script_is_in_make_bench():
    make = (BENCH.parent / "Makefile").read_text()
    assert all(f"benchmarks/{name}.py" in make for name in SCRIPTS)
    assert "skullstrip" in SCRIPTS and len(SCRIPTS) >= 8
