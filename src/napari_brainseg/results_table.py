"""The results table of a batch run: rows, ``results.csv``, provenance, split runs merged.

One row per input (:class:`FileResult`); ``results.csv`` is written atomically with its provenance
beside it; the part tables of a split run (``--part I/N``) are merged back into one table.
It never imports torch, so merging parts and reading tables stay light.
"""

from __future__ import annotations

import csv
import io as _io
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from . import provenance
from .batch_inputs import list_inputs
from .io import atomic_write
from .metrics import Counts
from .provenance import SIDECAR_SUFFIX

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileResult:
    """The outcome for one input file of a batch run."""

    source: Path
    status: Literal["ok", "skipped", "failed"]
    output: Path | None = None
    voxels: int = 0
    size_mm: float = 0.0
    unit: str = ""
    seconds: float = 0.0
    error: str = ""
    dice: float | None = None
    counts: Counts | None = field(default=None, repr=False)
    #: Uncertain volume (mm³) or area (mm²) when uncertainty was asked for
    #: (:mod:`napari_brainseg.uncertainty`), and the most uncertain slice's index.
    uncertainty: float | None = None
    uncertain_slice: int | None = None

    def row(self) -> dict[str, Any]:
        r"""One results.csv row (file names that are not UTF-8 are written with \x escapes)."""
        return {
            "file": _text(self.source), "status": self.status,
            "output": _text(self.output) if self.output else "",
            "tumour_voxels": self.voxels,
            "tumour_area_mm2": f"{self.size_mm:.2f}" if self.unit == "mm2" else "",
            "tumour_volume_mm3": f"{self.size_mm:.2f}" if self.unit == "mm3" else "",
            "seconds": f"{self.seconds:.3f}",
            "dice_vs_mask": "" if self.dice is None else f"{self.dice:.4f}",
            "uncertainty": "" if self.uncertainty is None else f"{self.uncertainty:.2f}",
            "most_uncertain_slice": "" if self.uncertain_slice is None
            else self.uncertain_slice,
            "error": _text(self.error),
        }


def _text(value: str | Path) -> str:
    r"""``value`` as valid UTF-8 text: bytes of a non-UTF-8 file name become ``\xe9`` escapes.

    Such names reach Python as lone surrogates, which no UTF-8 file can hold.
    """
    try:
        return os.fsencode(str(value)).decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


CSV_FIELDS = ["file", "status", "output", "tumour_voxels", "tumour_area_mm2",
              "tumour_volume_mm3", "seconds", "dice_vs_mask", "uncertainty",
              "most_uncertain_slice", "error"]


def write_results_csv(path: Path, results: Sequence[FileResult]) -> None:
    """Write ``results.csv`` atomically (one row per input, :data:`CSV_FIELDS`).

    Raises
    ------
    OSError
        The file could not be written (full disk, read-only folder); the old table, if any, is
        left whole.
    """
    _write_rows(path, [r.row() for r in results])


def _write_rows(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, restval="", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    text = buf.getvalue()
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_provenance(path: Path, rec: dict[str, Any]) -> None:
    """Write a provenance file unless a user's file has that name (then say so, once)."""
    try:
        if provenance.write_json(path, rec) is None:
            log.warning("%s exists and was not written by napari-brainseg; left as it is, so "
                        "this run's provenance is not recorded there", path)
    except OSError as exc:  # a full disk must not stop the batch (results.csv says more)
        log.info("%s not written: %s", path, exc.strerror or exc)


def try_write_csv(path: Path, results: Sequence[FileResult]) -> None:
    """Update the table, or log why not.

    A full disk must not stop the batch: the next update, or the caller's final
    :func:`write_results_csv`, tries again.
    """
    try:
        write_results_csv(path, results)
    except OSError as exc:
        log.info("%s not updated: %s", path, exc.strerror or exc)


# --------------------------------------------------------------------------- parts


def parse_part(text: str) -> tuple[int, int]:
    """``"I/N"`` (part I of N, counted from 1) as ``(I, N)``.

    Raises
    ------
    ValueError
        Not two whole numbers with ``1 <= I <= N``; the message says what is expected.
    """
    head, sep, tail = str(text).partition("/")
    try:
        index, count = int(head), int(tail)
    except ValueError:
        index = count = 0
    if not sep or count < 1 or not 1 <= index <= count:
        raise ValueError(f"--part must be I/N with 1 <= I <= N (e.g. 1/4 ... 4/4 for four "
                         f"processes), got {text!r}")
    return index, count


def results_csv_name(part: tuple[int, int] | None = None) -> str:
    """``results.csv``, or ``results.partI.csv`` for part I of a split run."""
    return "results.csv" if part is None else f"results.part{part[0]}.csv"


def select_part(items: Sequence[tuple[Path, Path | None]], root: str | Path,
                part: tuple[int, int]) -> list[tuple[Path, Path | None]]:
    """Part ``I`` of ``N`` of a run's inputs: every N-th input, starting with the I-th.

    The inputs are ordered by their path below ``root`` (as bytes, so locale and file system
    order do not matter), so independent processes given the same folder agree on the split
    however they spell it; taking every N-th spreads large and small scans over the parts.
    The parts are disjoint and together hold every input once.
    """
    index, count = part
    root = Path(root)

    def key(item: tuple[Path, Path | None]) -> bytes:
        src = item[0]
        try:
            rel = src.relative_to(root) if root.is_dir() else Path(src.name)
        except ValueError:
            rel = src
        return os.fsencode(str(rel))

    return sorted(items, key=key)[index - 1::count]


_PART_TABLE = re.compile(r"results\.part([1-9][0-9]*)\.csv")


def part_tables(out_dir: str | Path) -> dict[int, Path]:
    """The part tables (``results.partI.csv``) in an output folder, by part number."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return {}
    found = {}
    for p in out_dir.iterdir():
        m = _PART_TABLE.fullmatch(p.name)
        if m and p.is_file():
            found[int(m.group(1))] = p
    return dict(sorted(found.items()))


def merge_parts(inputs: str | Path, output: str | Path,
                items: Sequence[tuple[Path, Path | None]] | None = None) -> list[dict[str, str]]:
    """Combine the part tables of a split run (``--part I/N``) into one ``results.csv``.

    Rows come in the order one plain run writes them. ``results.csv`` is written atomically
    (with the parts' provenance as ``results.csv.json``); only then are the part tables and
    their ``.json`` removed. Returns the rows.

    Raises
    ------
    ValueError
        No part tables; a part is missing (named, with the command that makes it); two parts
        list the same input (both named: parts of different splits); or the parts do not
        cover exactly the inputs (some named). Nothing is written or removed then.
    """
    root, out_dir = Path(inputs), Path(output)
    tables = part_tables(out_dir)
    if not tables:
        raise ValueError(f"{out_dir}: no part tables (results.partI.csv) to merge; run "
                         "'brainseg segment IN OUT --part I/N' for every part first")
    items = list(items) if items is not None else list_inputs(root, exclude=out_dir)
    records: dict[int, dict[str, Any]] = {}
    for i, path in tables.items():
        try:
            data = json.loads(path.with_name(path.name + SIDECAR_SUFFIX).read_text("utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and isinstance(data.get("part"), dict):
            records[i] = data
    counts = sorted({int(r["part"].get("of", 0)) for r in records.values()})
    if len(counts) > 1:
        raise ValueError(f"{out_dir}: the part tables come from different splits (N = "
                         f"{', '.join(map(str, counts))}); delete the stale results.part*.csv "
                         "files and run the parts of one split again")
    if counts:
        n = max(counts[0], max(tables))
        missing = [i for i in range(1, n + 1) if i not in tables]
        if missing:
            names = ", ".join(f"{i}/{n}" for i in missing)
            raise ValueError(f"{out_dir}: part{'s' if len(missing) > 1 else ''} {names} "
                             f"missing (no results.part{missing[0]}.csv); run 'brainseg "
                             f"segment {root} {out_dir} --part {missing[0]}/{n}' (and any other "
                             "missing part) with the same options, then merge again")
    rows: dict[str, dict[str, str]] = {}
    where: dict[str, int] = {}
    for i, path in tables.items():
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                name = row.get("file", "")
                if name in where:
                    raise ValueError(f"{out_dir}: {name} is in both results.part{where[name]}"
                                     f".csv and results.part{i}.csv, so the parts overlap "
                                     "(runs with different N?); delete the stale part tables "
                                     "and run the parts of one split again")
                rows[name], where[name] = row, i
    order = [_text(src) for src, _ in items]
    absent = [name for name in order if name not in rows]
    extra = [name for name in rows if name not in set(order)]
    if absent or extra:
        def few(names: list[str]) -> str:
            return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3
                                           else "")
        problem = (f"{len(absent)} input(s) are in no part table ({few(absent)})" if absent
                   else "")
        if extra:
            problem += ("; " if problem else "") + (
                f"the part tables list {len(extra)} file(s) that are not inputs of {root} "
                f"({few(extra)}; were the parts run on another folder or spelling of it?)")
        raise ValueError(f"{out_dir}: cannot merge: {problem}. Run the missing parts, or "
                         "delete the results.part*.csv files and segment again")
    merged = [rows[name] for name in order]
    _write_rows(out_dir / "results.csv", merged)
    if records:
        rec = dict(next(iter(records.values())))
        rec.pop("part", None)
        write_provenance(out_dir / f"results.csv{SIDECAR_SUFFIX}", rec)
    for path in tables.values():
        for p in (path, path.with_name(path.name + SIDECAR_SUFFIX)):
            p.unlink(missing_ok=True)
    return merged
