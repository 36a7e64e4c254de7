"""Descriptor files that carry their column layout: save, inspect, load.

A descriptor array is only meaningful with the settings it was computed with
(``k``, ``cutoff``, ``species``) and the order of its columns.  This module
writes that record next to the array and refuses, on loading, a file whose
record does not match what the caller computes, so descriptors written by one
tool and read by another never give a wrong dH without a word.

Formats
-------
``.npz``
    Array ``x`` (n, d); ``layout``, a 0-d string array holding the JSON record
    (see :func:`layout_record`); and scalars ``k`` and ``cutoff``, so readers
    of the earlier ``.npz`` format (``descriptors`` or ``x``, ``k``,
    ``cutoff``) still read the file.
``.npy``
    The bare array (readable by any tool, e.g. ``numpy.load``) and the record
    in a sidecar ``<path>.layout.json`` (``x.npy`` -> ``x.npy.layout.json``).

The layout record (JSON object)::

    {"format": "quests-descriptors", "descriptor_version": "2",
     "block_order": "reference: [X1_all, X1_s..., X2_all, X2_s...]",
     "k": 32, "cutoff": 5.0, "species": ["Au", "Cu"], "width": 189,
     "source": "train.xyz"}

Files without a record
----------------------
* A bare ``.npy`` (no sidecar), or an ``.npz`` holding only ``x`` or
  ``descriptors``, e.g. the output of the reference package ``quests``, is
  accepted when its width equals ``descriptor_width(k, n_species)``, and is
  then taken to be in the reference layout (:data:`quests_core.descriptors.LAYOUT`),
  which is the layout of this package from descriptor version 2 on.
* An ``.npz`` in the earlier format of this package (``k``/``cutoff`` scalars,
  no ``layout``) is accepted for a single-component descriptor (width
  ``2k - 1``: one block, the same in every layout) after its ``k`` and
  ``cutoff`` are checked; for a multicomponent descriptor it is refused,
  because those files were written with the earlier block order
  ``[X_all, X_s...]`` (each ``[X1, X2]``) that nothing records.

Invariants
----------
- A file is refused (one-line :class:`~quests_core.errors.QuestsError` naming
  the file and every field that differs) when its ``k``, ``cutoff``, width,
  block order or descriptor version differ from the caller's, or when its
  species differ and either side is multicomponent (a single-component
  descriptor does not depend on the species).
- Reading never raises anything but that one-line error (a damaged archive,
  a short or CRC-broken member, an object array, a non-UTF-8 sidecar), and
  never allocates what a header merely declares: the ``.npy`` header of the
  array (or ``.npz`` member) is read first and the file refused when it
  declares more bytes than it holds, more than ``max_bytes``
  (``$QUESTS_MAX_DESCRIPTOR_BYTES``, default 16 GiB) or, for a compressed
  member, more than :data:`MAX_COMPRESSION_RATIO` times its compressed size
  (above :data:`COMPRESSED_FLOOR_BYTES`); values must be finite and within
  ±1e16 (:func:`quests_core._validate.check_descriptors`).
- Writes are atomic (:func:`quests_core.atomic.atomic_path`).
- Nothing here imports the reference package.

Memory: loading holds the array once (no copy, the file's dtype is kept; a
``.npz`` member is decompressed straight into it);
saving writes the caller's array as is.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._validate import check_descriptors
from .atomic import atomic_path
from .descriptors import DESCRIPTOR_VERSION, LAYOUT, descriptor_width
from .errors import QuestsError
from .settings import normalize_species

__all__ = [
    "FORMAT",
    "SUFFIXES",
    "layout_record",
    "load_descriptors",
    "max_descriptor_bytes",
    "read_layout",
    "save_descriptors",
    "sidecar_path",
    "write_layout",
]

#: the ``format`` field of every layout record this module writes
FORMAT = "quests-descriptors"
#: the file kinds this module reads and writes
SUFFIXES = (".npz", ".npy")
#: the block order of the earlier (descriptor version 1) multicomponent layout
OLD_LAYOUT = "quests-dashboard v1: [X_all, X_s...], each [X1, X2]"
#: environment variable: the most bytes a descriptor file may declare
MAX_BYTES_ENV = "QUESTS_MAX_DESCRIPTOR_BYTES"
#: default of that limit (16 GiB: 34 million rows of width 63 in float64)
DEFAULT_MAX_BYTES = 16 << 30
#: a compressed ``.npz`` member may declare at most this many times its compressed
#: size (descriptors compress 1-10x; a file of zeros about 1000x) ...
MAX_COMPRESSION_RATIO = 100
#: ... unless it declares no more than this
COMPRESSED_FLOOR_BYTES = 256 << 20
#: the layout record and the ``k``/``cutoff`` scalars: at most this many bytes
_SMALL_MEMBER_BYTES = 1 << 20
_READ_BLOCK = 1 << 22


def sidecar_path(path: str | os.PathLike) -> Path:
    """The layout sidecar of a ``.npy`` file: ``<path>.layout.json``."""
    return Path(f"{os.fspath(path)}.layout.json")


def _species_list(species) -> list[str]:
    return list(normalize_species(species) or ())


def layout_record(k: int, cutoff: float, species=None, source: str | None = None) -> dict:
    """The layout record of descriptors computed with these settings.

    Parameters
    ----------
    k, cutoff
        Descriptor settings.
    species : str or list of str, optional
        Species of the multicomponent descriptor (normalised: sorted, distinct).
    source : str, optional
        Where the descriptors come from (e.g. the structure file); informative only.

    Returns
    -------
    dict
        JSON-serialisable: ``format``, ``descriptor_version``, ``block_order``,
        ``k``, ``cutoff``, ``species``, ``width`` and ``source``.
    """
    sp = _species_list(species)
    return {
        "format": FORMAT,
        "descriptor_version": DESCRIPTOR_VERSION,
        "block_order": LAYOUT,
        "k": int(k),
        "cutoff": float(cutoff),
        "species": sp,
        "width": descriptor_width(int(k), len(sp)),
        "source": None if source is None else str(source),
    }


def _suffix(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise QuestsError("a descriptor file ends with .npz or .npy", source=str(path))
    return suffix


def save_descriptors(
    path: str | os.PathLike, x: np.ndarray, *, k: int, cutoff: float, species=None,
    source: str | None = None,
) -> Path:
    """Write descriptors with their layout record.

    Parameters
    ----------
    path : str or path
        ``.npz`` (array and record in one file) or ``.npy`` (the bare array, the
        record in ``<path>.layout.json``).
    x : array (n, d)
        Descriptors in this package's (= the reference's) layout.
    k, cutoff, species
        The settings they were computed with; ``d`` must equal
        ``descriptor_width(k, len(species))``.
    source : str, optional
        Where they come from, stored in the record.

    Returns
    -------
    pathlib.Path
        The file written.
    """
    suffix = _suffix(path)
    x = np.asarray(x)
    record = layout_record(k, cutoff, species, source)
    if x.ndim != 2 or x.dtype.kind != "f":
        raise QuestsError(
            f"descriptors must be a 2-D float array, got shape {x.shape} dtype {x.dtype}",
            source=str(path),
        )
    if x.shape[1] != record["width"]:
        raise QuestsError(
            f"descriptor width {x.shape[1]} does not match k={record['k']}, species "
            f"{record['species']} (width {record['width']})", source=str(path),
        )
    text = json.dumps(record, sort_keys=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as fd:
        if suffix == ".npz":
            np.savez(fd, x=x, layout=np.array(text), k=record["k"], cutoff=record["cutoff"])
        else:
            np.save(fd, x, allow_pickle=False)
    if suffix == ".npy":
        with atomic_path(sidecar_path(path)) as tmp:
            tmp.write_text(text + "\n")
    return Path(path)


def write_layout(
    path: str | os.PathLike, *, k: int, cutoff: float, species=None, source: str | None = None
) -> Path:
    """Write the sidecar ``<path>.layout.json`` of a ``.npy`` written elsewhere.

    For writers that stream a large array into a ``.npy`` themselves (e.g. a
    memory-mapped file filled one frame at a time): the array's width is
    checked against the settings before the record is written.

    Returns
    -------
    pathlib.Path
        The sidecar written.
    """
    if _suffix(path) != ".npy":
        raise QuestsError("a layout sidecar belongs to a .npy file", source=str(path))
    record = layout_record(k, cutoff, species, source)
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise QuestsError(f"cannot read descriptor file ({exc})", source=str(path)) from None
    if x.ndim != 2 or x.shape[1] != record["width"]:
        raise QuestsError(
            f"descriptor array has shape {x.shape}, expected width {record['width']} for "
            f"k={record['k']}, species {record['species']}", source=str(path),
        )
    del x
    side = sidecar_path(path)
    with atomic_path(side) as tmp:
        tmp.write_text(json.dumps(record, sort_keys=True) + "\n")
    return side


def _parse_record(text: str, where: str) -> dict:
    try:
        record = json.loads(text)
    except ValueError as exc:
        msg = getattr(exc, "msg", str(exc))
        raise QuestsError(f"layout record is not JSON ({msg})", source=where) from None
    except RecursionError:
        raise QuestsError("layout record is not JSON (nested too deeply)", source=where) from None
    if not isinstance(record, dict):
        raise QuestsError("layout record is not a JSON object", source=where)
    return record


def max_descriptor_bytes(limit: int | None = None) -> int:
    """The most bytes a descriptor file may declare (an explicit ``limit``, else
    ``$QUESTS_MAX_DESCRIPTOR_BYTES``, else :data:`DEFAULT_MAX_BYTES`)."""
    if limit is not None:
        return int(limit)
    text = os.environ.get(MAX_BYTES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_BYTES
    try:
        value = int(float(text))
    except ValueError:
        raise QuestsError(f"${MAX_BYTES_ENV} must be a number of bytes, got {text!r}") from None
    if value < 1:
        raise QuestsError(f"${MAX_BYTES_ENV} must be positive, got {text!r}")
    return value


def _gib(n: int) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**30 else f"{n / 2**20:.3g} MiB"


class _Counting:
    """A read-only stream that counts the bytes read through it (for header lengths)."""

    def __init__(self, fd):
        self.fd, self.count = fd, 0

    def read(self, n: int = -1) -> bytes:
        data = self.fd.read(n)
        self.count += len(data)
        return data


class _Refused(ValueError):
    """A descriptor file refused for a reason this module states (no "cannot read")."""


@dataclass(frozen=True)
class _Header:
    """What an ``.npy`` header declares."""

    shape: tuple[int, ...]
    fortran: bool
    dtype: np.dtype
    length: int  # bytes of magic + header

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def _read_header(fd, what: str) -> _Header:
    """The ``.npy`` header at the start of ``fd`` (numpy's own parser; nothing allocated).

    Raises :class:`_Refused` naming ``what`` for anything but a version 1.0/2.0
    header of a plain, non-object array with a non-negative shape (and numpy's
    ``ValueError`` for a header it cannot parse).
    """
    from numpy.lib import format as npy

    counted = _Counting(fd)
    try:
        version = npy.read_magic(counted)
    except ValueError:
        raise _Refused(f"{what} is not a .npy array (no NUMPY magic)") from None
    if version in ((1, 0), (2, 0)):
        read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
        try:
            shape, fortran, dtype = read(counted)
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError) as exc:
            text = " ".join(str(exc).split())[:200]
            raise _Refused(f"{what} has a damaged .npy header ({text})") from None
    else:
        raise _Refused(f"{what} has .npy version {version[0]}.{version[1]} (1.0 and 2.0 are read)")
    if dtype.hasobject:
        raise _Refused(f"object arrays are not descriptor data ({what} has dtype {dtype})")
    if dtype.itemsize == 0 or dtype.fields is not None or dtype.subdtype is not None:
        raise _Refused(f"{what} has dtype {dtype}, not a plain numeric array")
    if any(int(s) < 0 for s in shape):
        raise _Refused(f"{what} declares the shape {shape}")
    return _Header(tuple(int(s) for s in shape), bool(fortran), dtype, counted.count)


def _check_size(head: _Header, what: str, holds: int, compressed: int | None, limit: int) -> None:
    """Refuse a header that declares more bytes than the data holds, than ``limit``, or
    (compressed data) more than :data:`MAX_COMPRESSION_RATIO` times its compressed size
    above :data:`COMPRESSED_FLOOR_BYTES`, before anything is allocated."""
    need = head.nbytes
    if need > limit:
        raise _Refused(
            f"{what} declares shape {head.shape} of {head.dtype} ({_gib(need)}), more than "
            f"the limit of {_gib(limit)} (${MAX_BYTES_ENV})"
        )
    if need > holds:
        raise _Refused(
            f"{what} declares shape {head.shape} of {head.dtype} ({need} bytes) but holds "
            f"{max(holds, 0)} bytes of data"
        )
    if compressed is not None and need > max(MAX_COMPRESSION_RATIO * compressed,
                                             COMPRESSED_FLOOR_BYTES):
        raise _Refused(
            f"{what} declares {_gib(need)} from {compressed} compressed bytes (ratio "
            f"{need / max(compressed, 1):.0f}, more than {MAX_COMPRESSION_RATIO}): refused "
            "as a decompression bomb"
        )


def _read_data(fd, head: _Header, what: str) -> np.ndarray:
    """The array data after the header: exactly ``head.nbytes`` bytes, then the end."""
    count = math.prod(head.shape)
    out = np.empty(count, dtype=head.dtype)
    view = memoryview(out).cast("B")
    got = 0
    while got < len(view):
        n = fd.readinto(view[got : got + _READ_BLOCK])
        if not n:
            raise _Refused(f"{what} ends after {got} of {len(view)} bytes of data")
        got += n
    if fd.read(1):
        raise _Refused(f"{what} holds more data than its header declares")
    if head.fortran:
        return out.reshape(head.shape[::-1]).transpose()
    return out.reshape(head.shape)


def _check_main(head: _Header, what: str) -> None:
    """The descriptor array itself: 2-D float, refused before its data is read."""
    if head.dtype.kind != "f":
        raise QuestsError(f"descriptor array has dtype {head.dtype}, expected float", source=what)
    if len(head.shape) != 2 or head.shape[0] == 0 or head.shape[1] == 0:
        raise QuestsError(f"descriptor array has shape {head.shape}, expected (n, d)", source=what)


def _read_npy(path: str, limit: int) -> np.ndarray:
    """A ``.npy`` descriptor array, its header checked before anything is allocated."""
    with open(path, "rb") as fd:
        head = _read_header(fd, "the file")
        _check_main(head, path)
        _check_size(head, "the array", os.fstat(fd.fileno()).st_size - head.length, None, limit)
        return _read_data(fd, head, "the array")


def _read_member(zf: zipfile.ZipFile, name: str, limit: int, main: bool, path: str) -> np.ndarray:
    """Member ``name`` (``x``, ``layout``, ...) of an ``.npz``, checked like a ``.npy``."""
    info = zf.getinfo(f"{name}.npy")
    what = f"member {name}.npy"
    compressed = info.compress_size if info.compress_type != zipfile.ZIP_STORED else None
    with zf.open(info) as fd:
        head = _read_header(fd, what)
        if main:
            _check_main(head, path)
        else:
            limit = min(limit, _SMALL_MEMBER_BYTES)
        _check_size(head, what, info.file_size - head.length, compressed, limit)
        return _read_data(fd, head, what)


def _read_npz(path: str, limit: int) -> tuple[np.ndarray, dict | None, dict]:
    with zipfile.ZipFile(path) as zf:
        names = {n[: -len(".npy")] for n in zf.namelist() if n.endswith(".npy")}
        key = "x" if "x" in names else "descriptors" if "descriptors" in names else None
        if key is None:
            raise QuestsError("no 'x' or 'descriptors' array in the file", source=path)
        record = None
        if "layout" in names:
            layout = _read_member(zf, "layout", limit, False, path)
            if layout.dtype.kind != "U" or layout.ndim != 0:
                raise QuestsError(
                    f"layout is not a text scalar (dtype {layout.dtype}, shape {layout.shape})",
                    source=path,
                )
            record = _parse_record(str(layout), path)
        legacy = {}
        for name in ("k", "cutoff"):
            if name in names:
                value = _read_member(zf, name, limit, False, path)
                if value.size != 1 or value.dtype.kind not in "iuf":
                    raise QuestsError(f"'{name}' is not a scalar", source=path)
                legacy[name] = value.item()
        x = _read_member(zf, key, limit, True, path)
    return x, record, legacy


def _read_sidecar(side: Path) -> dict | None:
    """The layout record of a ``.npy`` (its sidecar), None when it has none."""
    if not side.exists():
        return None
    try:
        if side.stat().st_size > _SMALL_MEMBER_BYTES:
            raise QuestsError("layout record is larger than 1 MiB", source=str(side))
        text = side.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise QuestsError(
            f"layout record is not UTF-8 text (byte {exc.start})", source=str(side)
        ) from None
    except OSError as exc:
        raise QuestsError(
            f"cannot read the layout record ({exc.strerror or exc})", source=str(side)
        ) from None
    return _parse_record(text, str(side))


def _read(path: str, max_bytes: int | None = None) -> tuple[np.ndarray, dict | None, dict]:
    """(array, layout record or None, legacy scalars ``k``/``cutoff`` found in an .npz).

    Every failure is a one-line :class:`QuestsError` naming the file (or its
    sidecar): whatever numpy, zipfile or the operating system raise.
    """
    suffix = _suffix(path)
    if not Path(path).exists():
        raise QuestsError("file not found", source=path)
    if not Path(path).is_file():
        raise QuestsError("not a regular file", source=path)
    limit = max_descriptor_bytes(max_bytes)
    try:
        if suffix == ".npz" and not zipfile.is_zipfile(path):
            with open(path, "rb") as fd:  # an .npz holding a bare .npy is read as one
                is_npy = fd.read(6) == b"\x93NUMPY"
            if not is_npy:
                raise _Refused("cannot read descriptor file (not a zip archive: truncated "
                               "or not an .npz)")
            suffix = ".npy"
        if suffix == ".npy":
            return _read_npy(path, limit), _read_sidecar(sidecar_path(path)), {}
        return _read_npz(path, limit)
    except QuestsError:
        raise
    except _Refused as exc:
        raise QuestsError(str(exc), source=path) from None
    except MemoryError:
        raise QuestsError("cannot read descriptor file (out of memory)", source=path) from None
    except OSError as exc:
        text = exc.strerror or str(exc)
        raise QuestsError(f"cannot read descriptor file ({text})", source=path) from None
    except Exception as exc:  # noqa: BLE001 - zipfile, zlib and numpy raise many types
        text = " ".join(str(exc).split())[:300] or type(exc).__name__
        if isinstance(exc, (zipfile.BadZipFile, zlib.error, EOFError)):
            text = f"damaged archive: {text}"
        raise QuestsError(f"cannot read descriptor file ({text})", source=path) from None


def read_layout(path: str | os.PathLike) -> dict | None:
    """The layout record of a descriptor file, ``None`` when it has none."""
    return _read(os.fspath(path))[1]


def _differences(record: dict, expected: dict) -> list[str]:
    diffs = []
    for name, label in (("format", "format"), ("block_order", "block order"),
                        ("descriptor_version", "descriptor version")):
        if str(record.get(name)) != str(expected[name]):
            diffs.append(f"{label} {record.get(name)!r} in the file, {expected[name]!r} expected")
    try:
        k = int(record.get("k"))
        cutoff = float(record.get("cutoff"))
        width = int(record.get("width"))
        species = _species_list(record.get("species"))
    except (TypeError, ValueError, QuestsError):
        return [*diffs, "k, cutoff, width or species unreadable"]
    if k != expected["k"]:
        diffs.append(f"k {k} in the file, {expected['k']} asked")
    if not np.isclose(cutoff, expected["cutoff"], rtol=0, atol=1e-12):
        diffs.append(f"cutoff {cutoff:g} in the file, {expected['cutoff']:g} asked")
    multi = len(species) > 1 or len(expected["species"]) > 1
    if multi and species != expected["species"]:
        diffs.append(f"species {species} in the file, {expected['species']} asked")
    if width != expected["width"]:
        diffs.append(f"width {width} in the file, {expected['width']} asked")
    return diffs


def load_descriptors(
    path: str | os.PathLike, *, k: int, cutoff: float, species=None, max_bytes: int | None = None
) -> np.ndarray:
    """Descriptors from a file, checked against the settings they will be compared with.

    Parameters
    ----------
    path : str or path
        ``.npz`` or ``.npy`` (see the module docstring for files without a layout).
    k, cutoff, species
        The settings of the descriptors these will be compared with.
    max_bytes : int, optional
        The most bytes the file may declare (default ``$QUESTS_MAX_DESCRIPTOR_BYTES``,
        else :data:`DEFAULT_MAX_BYTES`); checked on the header, before allocating.

    Returns
    -------
    numpy.ndarray
        ``(n, descriptor_width(k, n_species))``, the file's float dtype, in the
        reference layout.

    Raises
    ------
    QuestsError
        One line naming the file and what differs (k, cutoff, species, width,
        block order, descriptor version), or what is wrong with the file
        (damaged archive, object array, a shape beyond the limits, values that are
        not finite or beyond ±1e16, a sidecar that is not UTF-8 JSON).
    """
    where = os.fspath(path)
    expected = layout_record(k, cutoff, species)
    x, record, legacy = _read(where, max_bytes)
    if x.ndim != 2 or len(x) == 0 or x.shape[1] == 0:
        raise QuestsError(f"descriptor array has shape {x.shape}, expected (n, d)", source=where)
    if x.dtype.kind != "f":
        raise QuestsError(f"descriptor array has dtype {x.dtype}, expected float", source=where)
    diffs: list[str] = []
    if record is not None:
        diffs = _differences(record, expected)
    else:
        if "k" in legacy and int(legacy["k"]) != expected["k"]:
            diffs.append(f"k {legacy['k']} in the file, {expected['k']} asked")
        if "cutoff" in legacy and not np.isclose(float(legacy["cutoff"]), expected["cutoff"],
                                                 rtol=0, atol=1e-12):
            diffs.append(f"cutoff {legacy['cutoff']:g} in the file, {expected['cutoff']:g} asked")
        if legacy and len(expected["species"]) > 1:
            diffs.append(
                "no layout record (written before descriptor version "
                f"{DESCRIPTOR_VERSION}, block order {OLD_LAYOUT!r}); recompute the descriptors"
            )
    if x.shape[1] != expected["width"] and not any(d.startswith("width") for d in diffs):
        diffs.append(f"width {x.shape[1]} in the file, {expected['width']} asked "
                     f"(k={expected['k']}, species {expected['species']})")
    if diffs:
        raise QuestsError("descriptor layout differs: " + "; ".join(diffs), source=where)
    _check_values(x, where)
    return x


def _check_values(x: np.ndarray, where: str) -> None:
    """Finite values within the range every kernel sum stays finite for
    (:func:`quests_core._validate.check_descriptors`), or one line naming the file."""
    if not np.isfinite(x).all():
        raise QuestsError("descriptor array has NaN or infinite values", source=where)
    try:
        check_descriptors(x, "descriptor array")
    except QuestsError as exc:
        raise QuestsError(exc.detail, source=where) from None

