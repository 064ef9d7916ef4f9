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


def test_helpers(capsys):
    from _bench import interleaved, median_seconds, print_table

    assert median_seconds(lambda: None, repeats=3) >= 0
    assert set(interleaved({"a": lambda: None, "b": lambda: None}, 2)) == {"a", "b"}
    print_table(["x", "y"], [["a", 1.23456], ["b", 12345.6]])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| x") and "1.23" in out[2] and "12,346" in out[3]


def test_every_script_is_in_make_bench():
    make = (BENCH.parent / "Makefile").read_text()
    assert all(f"benchmarks/{name}.py" in make for name in SCRIPTS)
    assert "skullstrip" in SCRIPTS and len(SCRIPTS) >= 8
