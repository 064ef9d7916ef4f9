"""A training run's files: the best model ``OUT`` and the resumable ``OUT.last.pt``.

The checks here run before a run writes or resumes them (see :mod:`napari_brainseg.train`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .model import CheckpointError


def last_path_for(out: Path) -> Path:
    """``model.pt`` -> ``model.last.pt``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.last{out.suffix or '.pt'}")


def check_resume_target(resume: str | Path, out: str | Path) -> None:
    """Refuse to resume ``resume`` into another run's files.

    A resumed run keeps its best epoch so far in its own ``OUT`` (the best model is only
    rewritten when a later epoch beats it), so the checkpoint must be ``OUT.last.pt`` and ``OUT``
    must exist; otherwise the run would end naming a model it never wrote.
    """
    resume, out = Path(resume), Path(out)
    if not resume.is_file():
        return  # load_checkpoint says "no such checkpoint file"
    if last_path_for(out).resolve() != resume.resolve():
        model = resume.with_name(resume.stem.removesuffix(".last") + resume.suffix)
        raise CheckpointError(
            f"--resume {resume.name} continues the run whose model is {model.name}; give "
            f"--out {model.name} (its best epoch so far is there), or copy both files to new "
            "names first"
        )
    if not out.is_file():
        raise CheckpointError(
            f"{out.name}: the best model of the run to resume is missing (only {resume.name} "
            f"is there); train again, or start a new run from it with --init {resume.name}"
        )


def check_output_path(out: str | Path) -> None:
    """Refuse, before any epoch is trained, a model path that could not be written.

    Raises
    ------
    ValueError
        ``out`` (or its ``.last.pt``) is a folder, or its folder cannot be created or written.
    """
    out = Path(out)
    for p in (out, last_path_for(out)):
        if p.is_dir():
            raise ValueError(f"{p}: is a folder; the model path names a file, e.g. "
                             f"{p / 'model.pt'}")
    for folder in (out.parent, *out.parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise ValueError(f"{folder}: is a file, so no model can be saved inside it")
            break
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".probe", dir=out.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(f"{out.parent}: cannot write the model there "
                         f"({exc.strerror or exc}); choose another folder") from exc
