"""``brainseg segment --part I/N`` and ``--merge``: a run split over processes equals one run."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from napari_brainseg.cli import main
from napari_brainseg.results_table import merge_parts, parse_part, select_part
from napari_brainseg.synthetic import write_sample_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("parts") / "in"
    write_sample_folder(root, n=5, shape=(64, 64))
    return root


def rows(table: Path) -> list[dict[str, str]]:
    with open(table, newline="", encoding="utf-8") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def contents(out: Path) -> dict[str, object]:
    """Every file of an output folder: bytes, JSON without its time stamp, or table rows."""
    found: dict[str, object] = {}
    for p in sorted(out.rglob("*")):
        if not p.is_file():
            continue
        name = str(p.relative_to(out))
        if p.name == "results.csv":  # the output column names the folder itself
            found[name] = [{**r, "output": r["output"].replace(str(out), "OUT")} for r in rows(p)]
        elif p.suffix == ".json":
            found[name] = {k: v for k, v in json.loads(p.read_text()).items() if k != "created"}
        else:
            found[name] = p.read_bytes()
    return found


@pytest.mark.parametrize("text, expected", [("1/1", (1, 1)), ("2/4", (2, 4)), ("4/4", (4, 4))])
def test_parse_part(text, expected):
    assert parse_part(text) == expected


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "2", "a/b", "1/2/3", "-1/2", ""])
def test_parse_part_refuses(text):
    with pytest.raises(ValueError, match="1 <= I <= N"):
        parse_part(text)


def test_select_part_is_a_stable_partition(tmp_path):
    root = tmp_path / "in"
    items = [(root / name, None) for name in ["b.png", "a.png", "sub/c.nii.gz", "d.png", "e.png"]]
    parts = [select_part(items, root, (i, 3)) for i in (1, 2, 3)]
    assert sorted(x for p in parts for x in p) == sorted(items)  # disjoint, all covered
    assert parts[0] == [(root / "a.png", None), (root / "d.png", None)]
    # another listing order, or the same folder spelled otherwise, gives the same split
    shuffled = [(root / ".." / "in" / s.relative_to(root), g) for s, g in reversed(items)]
    again = select_part(shuffled, root / ".." / "in", (1, 3))
    assert [s.name for s, _ in again] == ["a.png", "d.png"]


def test_two_processes_equal_one_run(folder, tiny_model, tmp_path, capsys):
    plain, split = tmp_path / "plain", tmp_path / "split"
    common = ["--model", str(tiny_model), "--overlays", "-q"]
    assert main(["segment", str(folder), str(plain), *common]) == 0
    procs = [subprocess.Popen([sys.executable, "-m", "napari_brainseg.cli", "segment",
                               str(folder), str(split), *common, "--part", f"{i}/2"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in (1, 2)]
    for p in procs:
        out, _ = p.communicate(timeout=600)
        assert p.returncode == 0, out
    assert not (split / "results.csv").exists()
    part1, part2 = rows(split / "results.part1.csv"), rows(split / "results.part2.csv")
    assert (len(part1), len(part2)) == (3, 2)
    assert not {r["file"] for r in part1} & {r["file"] for r in part2}
    assert main(["segment", str(folder), str(split), "--merge"]) == 0
    # an explicit --merge is not told to "run it again to segment": every scan was segmented
    assert "segmented nothing" not in capsys.readouterr().out
    assert not list(split.glob("results.part*"))
    assert contents(split) == contents(plain)
    assert len(rows(split / "results.csv")) == 5


def test_plain_run_merges_parts_it_finds(folder, tiny_model, tmp_path, capsys):
    out = tmp_path / "out"
    for i in (1, 2, 3):
        assert main(["segment", str(folder), str(out), "--model", str(tiny_model), "-q",
                     "--part", f"{i}/3"]) == 0
    assert main(["segment", str(folder), str(out), "--model", str(tiny_model), "-q"]) == 0
    out_text = capsys.readouterr().out
    assert "merged 3 part tables" in out_text and "segmented nothing" in out_text
    table = rows(out / "results.csv")
    assert [r["status"] for r in table] == ["ok"] * 5
    assert [r["file"] for r in table] == sorted(r["file"] for r in table)
    assert not list(out.glob("results.part*"))


def test_more_parts_than_inputs_write_an_empty_table(folder, tiny_model, tmp_path):
    out = tmp_path / "out"
    assert main(["segment", str(folder), str(out), "--model", str(tiny_model), "-q",
                 "--part", "7/7"]) == 0
    assert rows(out / "results.part7.csv") == []


def test_merge_refuses_missing_and_overlapping_parts(folder, tiny_model, tmp_path, capsys):
    out = tmp_path / "out"
    seg = ["segment", str(folder), str(out), "--model", str(tiny_model), "-q"]
    assert main([*seg, "--part", "1/3"]) == 0
    assert main([*seg, "--part", "3/3"]) == 0
    capsys.readouterr()
    assert main(["segment", str(folder), str(out), "--merge"]) == 2
    err = capsys.readouterr().err
    assert "part 2/3 missing" in err and "--part 2/3" in err
    assert not (out / "results.csv").exists() and (out / "results.part1.csv").exists()
    # a plain run finding the incomplete split also says how to start over in one run
    assert main(seg) == 2
    assert "delete " in capsys.readouterr().err and (out / "results.part1.csv").exists()
    # a stale table of another split: part 2 of 2 beside parts 1 and 3 of 3
    assert main([*seg, "--part", "2/2"]) == 0
    with pytest.raises(ValueError, match="different splits"):
        merge_parts(folder, out)
    # without the records saying N, the rows themselves show the overlap
    for p in out.glob("results.part*.csv.json"):
        p.unlink()
    with pytest.raises(ValueError, match=r"in both results\.part1\.csv and results\.part2\.csv"):
        merge_parts(folder, out)
    (out / "results.part2.csv").unlink()
    with pytest.raises(ValueError,
                       match=r"2 input\(s\) are in no part table \(.*phantom_0001.*phantom_0004"):
        merge_parts(folder, out)
    assert not (out / "results.csv").exists()


def test_merge_without_parts_and_bad_part_exit_2(folder, tmp_path, capsys):
    assert main(["segment", str(folder), str(tmp_path / "out"), "--merge"]) == 2
    assert "no part tables" in capsys.readouterr().err
    for bad in ("0/2", "3/2", "x"):
        assert main(["segment", str(folder), str(tmp_path / "out"), "--part", bad]) == 2
        assert "--part must be I/N with 1 <= I <= N" in capsys.readouterr().err
    assert main(["segment", str(folder), str(tmp_path / "o"), "--part", "1/2", "--merge"]) == 2
