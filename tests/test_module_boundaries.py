"""Modules use each other's public names: volume.py's helpers for the format readers are public."""

import ast
import sys
from pathlib import Path

import napari_brainseg

SRC = Path(napari_brainseg.__file__).parent


def _private_imports(module: str) -> list[str]:
    """``file: name`` for every private name imported from ``napari_brainseg.<module>``."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            target = node.module or ""
            if node.level:  # relative: ``.`` is the importing file's package, ``..`` its parent
                package = path.parent.relative_to(SRC.parent).parts
                package = package[:len(package) - (node.level - 1)]
                target = ".".join([*package, *([target] if target else [])])
            if target != f"napari_brainseg.{module}":
                continue
            found += [f"{path.relative_to(SRC)}: {a.name}" for a in node.names
                      if a.name.startswith("_") and not a.name.startswith("__")]
    return found


def test_no_module_imports_private_helpers_of_volume():
    assert _private_imports("volume") == []


def test_the_check_sees_relative_and_absolute_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "napari_brainseg"
    (pkg / "formats").mkdir(parents=True)
    (pkg / "formats" / "a.py").write_text("from napari_brainseg.volume import _x, y\n")
    (pkg / "b.py").write_text("from .volume import _z\nfrom .io import _w\n")
    (pkg / "formats" / "c.py").write_text("from ..volume import _v\nfrom .volume import _u\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", pkg)
    assert _private_imports("volume") == ["b.py: _z", "formats/a.py: _x",
                                          "formats/c.py: _v"]
