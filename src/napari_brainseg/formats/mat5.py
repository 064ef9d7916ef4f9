"""Memory claims of MATLAB v5 ``.mat`` files, read from their headers before scipy loads them.

A v5 file describes every variable (class, shape, then its data) in small headers, and a few
bytes can claim gigabytes: a tag may claim more bytes than the file holds, and 1 MB of
compressed zeros inflates to a 900 MB image (about 10 GB once the reader has its float32 copy).
:func:`check_mat5_claims` walks those headers (``scipy.io.whosmat`` stops at the top level, and
the figshare layout keeps its image inside the struct ``cjdata``), adds up what loading would
need, and refuses before anything large is allocated. Compressed variables are inflated in
1 MB pieces that are thrown away.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import BinaryIO

from napari_brainseg.volume import ReadError, memory_cap, memory_text, read_bytes_per_voxel

# Data types of v5 elements (MATLAB's "MAT-File Format", table 1-1).
_MI_INT8, _MI_INT32, _MI_UINT32, _MI_MATRIX, _MI_COMPRESSED = 1, 5, 6, 14, 15
# Array classes (table 1-3): bytes per element of the array loadmat builds.
_NUMERIC = {6: ("double", 8), 7: ("single", 4), 8: ("int8", 1), 9: ("uint8", 1),
            10: ("int16", 2), 11: ("uint16", 2), 12: ("int32", 4), 13: ("uint32", 4),
            14: ("int64", 8), 15: ("uint64", 8)}
#: Bytes per value of each stored element type (table 1-1).
_MI_SIZE = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8, 16: 1, 17: 2, 18: 4}
_CELL, _STRUCT, _OBJECT, _CHAR, _SPARSE, _FUNCTION, _OPAQUE = 1, 2, 3, 4, 5, 16, 17
#: Largest metadata element (flags, dimensions, names) read into memory; real files use bytes.
_META_BYTES = 16 * 2**20
#: Bytes loadmat spends per element of a cell or struct array (a Python object and its slot).
_OBJECT_BYTES = 64


class _Damaged(Exception):
    """The headers end early or contradict themselves."""


class _Region:
    """Bytes ``start`` to ``end`` of the open file, read forwards."""

    def __init__(self, fh: BinaryIO, start: int, end: int) -> None:
        self.fh, self.pos, self.end = fh, start, end

    def read(self, n: int) -> bytes:
        if n > self.end - self.pos:
            raise _Damaged(f"an element claims {n:,} bytes, but only {self.end - self.pos:,} "
                           "are left")
        self.fh.seek(self.pos)
        data = self.fh.read(n)
        if len(data) < n:
            raise _Damaged("the file ends early")
        self.pos += n
        return data

    def skip(self, n: int) -> None:
        if n > self.end - self.pos:
            raise _Damaged(f"an element claims {n:,} bytes, but only {self.end - self.pos:,} "
                           "are left")
        self.pos += n


class _Inflated:
    """The decompressed bytes of one ``miCOMPRESSED`` element, inflated as far as they are read."""

    _PIECE = 2**20

    def __init__(self, fh: BinaryIO, start: int, end: int) -> None:
        self.raw = _Region(fh, start, end)
        self.z = zlib.decompressobj()
        self.buf = b""
        self.pos = 0  # inflated bytes consumed

    def _more(self, want: int) -> bytes:
        """Up to ``want`` (at most one piece) newly inflated bytes; b"" at the end."""
        want = min(want, self._PIECE)
        while True:
            if self.z.unconsumed_tail:
                out = self.z.decompress(self.z.unconsumed_tail, want)
            elif self.raw.pos < self.raw.end and not self.z.eof:
                out = self.z.decompress(self.raw.read(min(self._PIECE,
                                                          self.raw.end - self.raw.pos)), want)
            else:
                return b""
            if out:
                return out

    def read(self, n: int) -> bytes:
        parts, have = [self.buf], len(self.buf)
        while have < n:
            try:
                more = self._more(n - have)
            except zlib.error as exc:
                raise _Damaged(f"its compressed data is damaged ({exc})") from exc
            if not more:
                raise _Damaged("a compressed variable ends early")
            parts.append(more)
            have += len(more)
        data = b"".join(parts)
        self.buf = data[n:]
        self.pos += n
        return data[:n]

    def skip(self, n: int) -> None:
        while n > 0:
            step = min(n, self._PIECE)
            self.read(step)
            n -= step


class _Walk:
    """One pass over a v5 file's headers, adding up what loading each variable needs."""

    def __init__(self, path: Path, endian: str) -> None:
        self.path, self.endian = path, endian
        self.cap, self.where = memory_cap()
        self.total = 0

    def claim(self, n_bytes: int, name: str, what: str) -> None:
        self.total += n_bytes
        if self.total > self.cap:
            raise ReadError(
                f"{self.path.name}: loading this MATLAB file needs about "
                f"{memory_text(self.total)} of memory ('{name}' is {what}), more than the "
                f"{memory_text(self.cap)} {self.where}. Save a smaller (cropped or "
                "downsampled) array in MATLAB, or use a machine with more memory."
            )

    def tag(self, s: _Region | _Inflated) -> tuple[int, int, bytes | None]:
        """``(type, bytes, inline data)`` of the next element; inline data for small elements."""
        word, second = struct.unpack(self.endian + "II", s.read(8))
        if word >> 16:  # small data element: up to 4 bytes inside the tag
            n = word >> 16
            if n > 4:
                raise _Damaged("a small data element claims more than 4 bytes")
            return word & 0xFFFF, n, struct.pack(self.endian + "I", second)[:n]
        return word, second, None

    def element(self, s: _Region | _Inflated) -> tuple[int, bytes]:
        """The next element's type and data (small metadata only)."""
        kind, n, inline = self.tag(s)
        if inline is not None:
            return kind, inline
        if n > _META_BYTES:
            raise _Damaged(f"a name or dimension element claims {n:,} bytes")
        data = s.read(n)
        s.skip(-n % 8)
        return kind, data

    def data(self, s: _Region | _Inflated) -> int:
        """Skip the next data element; its length in bytes."""
        _, n, inline = self.tag(s)
        if inline is None:
            s.skip(n + (-n % 8))
        return n

    def matrix(self, s: _Region | _Inflated, name: str) -> None:
        """Walk one ``miMATRIX`` element (a variable, a field or a cell) and claim its memory."""
        kind, n, _ = self.tag(s)
        if kind != _MI_MATRIX:
            raise _Damaged(f"'{name}' is not a MATLAB array (element type {kind})")
        if n == 0:
            return  # an empty array
        start = s.pos
        _, flags = self.element(s)
        if len(flags) < 4:
            raise _Damaged(f"'{name}' has no array flags")
        flags_class = struct.unpack(self.endian + "I", flags[:4])[0]
        cls, complex_ = flags_class & 0xFF, bool(flags_class >> 11 & 1)
        if cls == _OPAQUE:  # function handles and class objects: skip by their length
            self.claim(n, name, "a MATLAB object")
            s.skip(max(0, n - (s.pos - start)))
            return
        _, dims_raw = self.element(s)
        count = len(dims_raw) // 4
        dims = struct.unpack(f"{self.endian}{count}i", dims_raw[:count * 4])
        if any(d < 0 for d in dims):
            raise _Damaged(f"'{name}' has a negative dimension {dims}")
        numel = 1
        for d in dims:
            numel *= d
        shape = " x ".join(str(d) for d in dims)
        _, own = self.element(s)
        if not name:  # a top-level variable is named by its header; a field by its struct
            name = own.rstrip(b"\0").decode("latin-1") or "(unnamed)"
        if cls in _NUMERIC or cls == _CHAR:
            what = f"{_NUMERIC.get(cls, ('char', 0))[0]} of shape {shape}"
            for _ in range(2 if complex_ else 1):  # the real part, then the imaginary part
                kind, n, inline = self.tag(s)
                # loadmat keeps the stored type (MATLAB stores whole numbers in smaller ones);
                # a crafted tag may hold more bytes than the shape needs: they are read too.
                size = _MI_SIZE.get(kind, 8)
                self.claim(numel * read_bytes_per_voxel(size) + max(0, n - numel * size),
                           name, what)
                if inline is None:
                    s.skip(n + (-n % 8))
        elif cls == _SPARSE:
            parts = 4 if complex_ else 3  # row indices, column starts, values (real, imaginary)
            self.claim(2 * sum(self.data(s) for _ in range(parts)), name,
                       f"a sparse matrix of shape {shape}")
        elif cls == _CELL:
            self.claim(numel * _OBJECT_BYTES, name, f"a cell array of shape {shape}")
            for i in range(numel):
                self.matrix(s, f"{name}{{{i + 1}}}")
        elif cls in (_STRUCT, _OBJECT):
            if cls == _OBJECT:
                self.element(s)  # the class name
            _, length_raw = self.element(s)
            length = struct.unpack(self.endian + "i", length_raw[:4])[0] if length_raw else 0
            _, names_raw = self.element(s)
            if length <= 0:
                raise _Damaged(f"'{name}' has field names of length {length}")
            fields = [names_raw[i:i + length].split(b"\0")[0].decode("latin-1")
                      for i in range(0, len(names_raw) - length + 1, length)]
            self.claim(numel * _OBJECT_BYTES * (1 + len(fields)), name,
                       f"a struct array of shape {shape}")
            for i in range(numel):
                index = f"({i + 1})" if numel > 1 else ""
                for field in fields:
                    self.matrix(s, f"{name}{index}.{field}")
        elif cls == _FUNCTION:
            self.matrix(s, f"{name}.function")
        else:
            raise _Damaged(f"'{name}' has the unknown array class {cls}")


def check_mat5_claims(path: Path) -> int:
    """Refuse a MATLAB v5 file whose headers claim more memory than loading may use.

    What loading needs is added up over every variable and nested field: the stored bytes,
    the array ``scipy.io.loadmat`` builds, and the reader's float32 copy
    (:func:`~napari_brainseg.volume.read_bytes_per_voxel`). The limit is
    :func:`~napari_brainseg.volume.memory_cap` (8 GiB, or the memory free when lower). Files
    that are not v5 (v4, HDF5 v7.3, garbage) are left to their readers.

    Raises
    ------
    ReadError
        When the claim is too large (naming the variable, its class and shape, and what to do),
        or when the headers claim more bytes than the file holds.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(128)
        if len(head) < 128 or 0 in head[:4] or head[126:128] not in (b"IM", b"MI"):
            return 0  # not a v5 file: scipy says what it is
        walk = _Walk(path, "<" if head[126:128] == b"IM" else ">")
        pos = 128
        try:
            while pos + 8 <= size:
                fh.seek(pos)
                kind, n = struct.unpack(walk.endian + "II", fh.read(8))
                end = pos + 8 + n
                if end > size:
                    raise _Damaged(f"a variable claims {n:,} bytes, but the file holds "
                                   f"{size - pos - 8:,} after its header")
                if kind == _MI_COMPRESSED:
                    walk.matrix(_Inflated(fh, pos + 8, end), "")
                else:
                    walk.matrix(_Region(fh, pos, end), "")
                pos = end
            return walk.total
        except _Damaged as exc:
            raise ReadError(
                f"{path.name}: not a readable MATLAB file: {exc}; it is truncated or damaged. "
                "Copy it again from its source, or save it again in MATLAB."
            ) from exc


def mat4_header(head: bytes) -> bool:
    """Whether ``head`` (a file's first bytes) starts like a MATLAB v4 variable.

    A v4 file has no file header: each variable starts with five int32 (type code, rows,
    columns, imaginary flag, name length) in the writer's byte order. v4 holds only plain
    matrices, never the struct of the figshare layout.
    """
    if len(head) < 20 or head[:4] == b"\x89HDF":
        return False
    for endian in "<>":
        mopt, rows, cols, imag, namelen = struct.unpack(endian + "5i", head[:20])
        m, o, p, t = mopt // 1000, mopt // 100 % 10, mopt // 10 % 10, mopt % 10
        if (0 <= mopt < 5000 and m in (0, 1, 2, 3, 4) and o == 0 and p <= 5 and t <= 2
                and rows >= 0 and cols >= 0 and imag in (0, 1) and 1 <= namelen <= 4096):
            return True
    return False

