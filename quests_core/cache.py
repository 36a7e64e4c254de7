"""Descriptor cache on disk, shared by the CLI and the dashboard.

Entries live in one directory (``$QUESTS_CACHE_DIR``, default
``~/.cache/quests-dashboard``):

* ``descriptors/<key>.npy``: a descriptor array (plain ``.npy``, readable with
  ``numpy.load``, memory-mappable);
* ``tables/<key>.parquet``: a per-frame or per-atom table (Parquet, so pandas,
  Dask and Datashader read it directly);
* ``<key>.json`` next to each: shape, dtype, size and SHA-256 of the data file.

The key is the SHA-256 of the content (the bytes of positions, cell, pbc and
atomic numbers of every structure, or of the bytes of a file plus the frame
selection) together with ``k``, the cutoff, the species list, the dtype and the
descriptor version. Every write goes to a temporary file in the same directory
that is then renamed over the entry (``os.replace``), and the metadata is
written last, so a process killed mid-write never leaves a corrupt entry. An
entry whose size or hash does not match its metadata is deleted and computed
again.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ase import Atoms

from quests_core.errors import QuestsError
from quests_core.export import STALE_TEMP_SECONDS, remove_stale_temp_files, temp_prefix

__all__ = [
    "CACHE_FORMAT",
    "DescriptorCache",
    "checksum_bytes",
    "FileDescriptors",
    "dataset_descriptors",
    "default_cache_dir",
    "descriptor_key",
    "file_descriptors",
    "file_digest",
    "result_key",
    "structures_digest",
]

log = logging.getLogger(__name__)

#: Bumped when the layout of cache entries changes.
CACHE_FORMAT = 1
#: Environment variable that overrides the cache directory.
CACHE_ENV = "QUESTS_CACHE_DIR"
_HEADER_BYTES = 128
_READ_BLOCK = 1 << 22
_DEFAULT_CHUNK_ATOMS = 20_000

Compute = Callable[..., np.ndarray]


def default_cache_dir() -> Path:
    """``$QUESTS_CACHE_DIR`` if set, else ``~/.cache/quests-dashboard``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "quests-dashboard"


# ----------------------------------------------------------------------------
# Content digests and keys
# ----------------------------------------------------------------------------


def _update_with_atoms(h: Any, atoms: Atoms) -> None:
    n = len(atoms)
    h.update(np.int64(n).tobytes())
    h.update(np.ascontiguousarray(atoms.numbers, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(atoms.positions, dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(atoms.cell[:], dtype=np.float64).tobytes())
    h.update(np.ascontiguousarray(atoms.pbc, dtype=np.uint8).tobytes())


def structures_digest(structures: Atoms | Iterable[Atoms]) -> str:
    """SHA-256 of the positions, cell, pbc and atomic numbers of every structure, in order."""
    if isinstance(structures, Atoms):
        structures = [structures]
    h = hashlib.sha256(b"quests-structures-v1")
    count = 0
    for atoms in structures:
        _update_with_atoms(h, atoms)
        count += 1
    h.update(np.int64(count).tobytes())
    return h.hexdigest()


_FILE_DIGESTS: dict[tuple[str, int, int, int], str] = {}


def _sha256_file(path: str | os.PathLike, offset: int = 0) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fd:
        fd.seek(offset)
        while block := fd.read(_READ_BLOCK):
            h.update(block)
    return h.hexdigest()


_CHECKSUM_BLOCK_WORDS = 512  # 4 KiB blocks


def checksum_bytes(data: bytes | bytearray | memoryview) -> str:
    """Fast block checksum of a byte string (64 hex digits).

    The data is cut into 4 KiB blocks; the sum (mod 2^64) of the 64-bit words
    of every block is computed with numpy at memory speed, and the SHA-256 of
    that short vector of block sums (plus the tail) is returned. A flipped
    bit, a zeroed or swapped page or a truncation changes it. Cache entries
    are checked with it on every read (``verify="checksum"``); the full
    SHA-256 is recorded too (``verify="sha256"``).
    """
    view = memoryview(data).cast("B")
    n_words = len(view) // 8
    n_full = n_words // _CHECKSUM_BLOCK_WORDS * _CHECKSUM_BLOCK_WORDS
    words = np.frombuffer(view, dtype="<u8", count=n_words)
    sums = words[:n_full].reshape(-1, _CHECKSUM_BLOCK_WORDS).sum(axis=1, dtype=np.uint64)
    h = hashlib.sha256(np.int64(len(view)).tobytes())
    h.update(sums.astype("<u8", copy=False).tobytes())
    h.update(bytes(view[n_full * 8 :]))
    return h.hexdigest()


def _checksum_file(path: str | os.PathLike, offset: int = 0) -> str:
    with open(path, "rb") as fd:
        fd.seek(offset)
        return checksum_bytes(fd.read())


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (remembered per process while size and mtime do not change)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise QuestsError(f"cannot read ({exc.strerror})", source=str(path)) from None
    memo = (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if memo not in _FILE_DIGESTS:
        _FILE_DIGESTS[memo] = _sha256_file(path)
    return _FILE_DIGESTS[memo]


def _descriptor_version() -> str:
    import importlib

    module = importlib.import_module("quests_core.descriptors")
    return str(getattr(module, "DESCRIPTOR_VERSION", "1"))


def _digest_json(payload: Mapping[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _species_param(species: str | Sequence[str] | None) -> list[str] | None:
    if species is None:
        return None
    if isinstance(species, str):
        species = [s for s in species.replace(",", " ").split() if s]
    return sorted(set(species))


def descriptor_key(
    content: str,
    k: int,
    cutoff: float,
    species: str | Sequence[str] | None = None,
    dtype: Any = np.float64,
    version: str | None = None,
) -> str:
    """Cache key of the descriptors of some content.

    Parameters
    ----------
    content : str
        A content digest (:func:`structures_digest`, or the frames key of a file).
    k, cutoff, species, dtype
        The descriptor parameters.
    version : str, optional
        Descriptor version (default: ``quests_core.descriptors.DESCRIPTOR_VERSION``
        or ``"1"``).
    """
    return _digest_json(
        {
            "cache_format": CACHE_FORMAT,
            "kind": "descriptors",
            "content": content,
            "k": int(k),
            "cutoff": repr(float(cutoff)),
            "species": _species_param(species),
            "dtype": np.dtype(dtype).str,
            "version": version if version is not None else _descriptor_version(),
        }
    )


def result_key(kind: str, **params: Any) -> str:
    """Cache key of a computed result (e.g. a per-atom dH table) from its inputs' keys
    and parameters (JSON-serialisable values)."""
    return _digest_json({"cache_format": CACHE_FORMAT, "kind": str(kind), "params": params})


def frames_key(
    path: str | os.PathLike,
    index: str = ":",
    format: str | None = None,
    type_map: Mapping[int, str] | None = None,
) -> str:
    """Cache key of the per-frame table of a file (content hash + frame selection)."""
    return _digest_json(
        {
            "cache_format": CACHE_FORMAT,
            "kind": "frames",
            "file": file_digest(path),
            "index": str(index),
            "format": format,
            "type_map": sorted((int(t), str(s)) for t, s in (type_map or {}).items()),
        }
    )


# ----------------------------------------------------------------------------
# Atomic files
# ----------------------------------------------------------------------------


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """A version 1.0 ``.npy`` header padded to exactly ``_HEADER_BYTES`` bytes."""
    from numpy.lib.format import dtype_to_descr

    descr = dtype_to_descr(np.dtype(dtype))
    dims = tuple(int(s) for s in shape)
    text = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {dims!r}, }}"
    room = _HEADER_BYTES - 10
    if len(text) + 1 > room:
        raise ValueError("shape too large for the fixed .npy header")
    body = (text + " " * (room - len(text) - 1) + "\n").encode("latin1")
    return b"\x93NUMPY\x01\x00" + np.uint16(room).astype("<u2").tobytes() + body


def _temp_path(final: Path) -> Path:
    """``<entry>.<host>-<pid>.<random>.tmp`` next to ``final`` (see :meth:`DescriptorCache.
    remove_leftovers`)."""
    fd, name = tempfile.mkstemp(prefix=temp_prefix(final.name), suffix=".tmp", dir=final.parent)
    os.close(fd)
    return Path(name)


def _fsync_replace(tmp: Path, final: Path) -> None:
    with open(tmp, "rb+") as fd:
        os.fsync(fd.fileno())
    os.replace(tmp, final)


def _write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    tmp = _temp_path(path)
    try:
        tmp.write_text(json.dumps(payload, indent=1, default=str))
        _fsync_replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _is_cache_temp(name: str) -> bool:
    """Whether ``name`` is a temporary file of a cache entry (``<key>.npy.*.tmp``, ...)."""
    return any(f"{suffix}." in name for suffix in (".npy", ".json", ".parquet"))


class _Invalid(Exception):
    """A cache entry is missing or was found corrupt (and deleted)."""

    def __init__(self, missing: bool):
        super().__init__("missing" if missing else "corrupt")
        self.missing = missing


def _array_from_npy_bytes(buf: np.ndarray) -> np.ndarray:
    """A writable array viewing the bytes of a whole ``.npy`` file (no copy)."""
    from numpy.lib import format as npy

    head = io.BytesIO(bytes(memoryview(buf)[:65536]))
    version = npy.read_magic(head)
    if version == (1, 0):
        shape, fortran, dtype = npy.read_array_header_1_0(head)
    elif version == (2, 0):
        shape, fortran, dtype = npy.read_array_header_2_0(head)
    else:
        raise ValueError(f"unsupported .npy version {version}")
    if dtype.hasobject:
        raise ValueError("object arrays are not cached")
    count = int(np.prod(shape, dtype=np.int64))
    offset = head.tell()
    if offset + count * dtype.itemsize != len(buf):
        raise ValueError("size does not match the header")
    array = np.frombuffer(buf, dtype=dtype, count=count, offset=offset)
    return array.reshape(shape, order="F" if fortran else "C")


class _ArrayWriter:
    """Streams row blocks of a 2-D array into a cache entry (see :meth:`DescriptorCache.writer`)."""

    def __init__(
        self,
        cache: DescriptorCache,
        key: str,
        width: int | None,
        dtype: Any,
        params: Mapping[str, Any] | None,
    ):
        self.cache, self.key = cache, key
        self.width = width
        self.dtype = np.dtype(dtype)
        self.params = dict(params or {})
        self.rows = 0
        self.final = cache._data_path(key, "descriptors")
        self.tmp = _temp_path(self.final)
        self._fd = open(self.tmp, "wb")
        self._fd.write(b"\0" * _HEADER_BYTES)
        self._hash = hashlib.sha256()
        self.done = False

    def append(self, block: np.ndarray) -> None:
        """Append rows (shape ``(m, width)``; cast to the writer's dtype)."""
        block = np.asarray(block)
        if block.ndim != 2:
            raise ValueError(f"expected a 2-D block, got shape {block.shape}")
        if self.width is None:
            self.width = int(block.shape[1])
        if block.shape[1] != self.width:
            raise ValueError(f"block has {block.shape[1]} columns, expected {self.width}")
        data = memoryview(np.ascontiguousarray(block, dtype=self.dtype)).cast("B")
        self._fd.write(data)
        self._hash.update(data)
        self.rows += int(block.shape[0])

    def commit(self) -> Path:
        """Finish the file and move it into place; returns the entry path."""
        if self.width is None:
            self.width = 0
        self._fd.seek(0)
        self._fd.write(_npy_header((self.rows, self.width), self.dtype))
        self._fd.flush()
        os.fsync(self._fd.fileno())
        self._fd.close()
        size = self.tmp.stat().st_size
        checksum = _checksum_file(self.tmp, _HEADER_BYTES)
        os.replace(self.tmp, self.final)
        self.cache._write_meta(
            self.key,
            "descriptors",
            self._hash.hexdigest(),
            size,
            {
                "checksum": checksum,
                "offset": _HEADER_BYTES,
                "shape": [self.rows, self.width],
                "dtype": self.dtype.str,
                **self.params,
            },
        )
        self.done = True
        return self.final

    def abort(self) -> None:
        """Drop the partial file; the cache is left as it was."""
        if not self._fd.closed:
            self._fd.close()
        self.tmp.unlink(missing_ok=True)
        self.done = True

    def __enter__(self) -> _ArrayWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.done:
            return
        if exc_type is None:
            self.commit()
        else:
            self.abort()


# ----------------------------------------------------------------------------
# The cache
# ----------------------------------------------------------------------------


class DescriptorCache:
    """Descriptor arrays and tables on disk, keyed by content and parameters.

    Parameters
    ----------
    directory : path-like, optional
        Cache directory (default :func:`default_cache_dir`). Created on demand.
    verify : {"checksum", "sha256", "size"} or bool
        How entries are checked when read. The size (and, for descriptor
        arrays, the ``.npy`` header) is always checked; ``"checksum"`` (the
        default) adds the fast :func:`checksum_bytes` of the content,
        ``"sha256"`` (or True) its SHA-256, ``"size"`` (or False) nothing more.
    """

    def __init__(self, directory: str | os.PathLike | None = None, verify: str | bool = "checksum"):
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        if verify is True:
            verify = "sha256"
        elif verify is False:
            verify = "size"
        if verify not in ("checksum", "sha256", "size"):
            raise ValueError(f"verify must be 'checksum', 'sha256' or 'size', got {verify!r}")
        self.verify = verify
        self.hits = 0
        self.misses = 0
        self.removed_leftovers = self.remove_leftovers()

    def remove_leftovers(self, grace: float = STALE_TEMP_SECONDS) -> list[Path]:
        """Delete the temporary files that writers killed mid-write left behind.

        Called when the cache is opened: a ``<entry>.*.tmp`` file is removed when
        its writer (named in the file name) was a process of this machine that
        has ended, or, for a writer that cannot be checked, when it was not
        modified for ``grace`` seconds (see :func:`quests_core.export.is_stale_temp`);
        a concurrent writer's file is left alone. Returns the removed paths.
        """
        removed: list[Path] = []
        for kind in ("descriptors", "tables"):
            removed += remove_stale_temp_files(self.directory / kind, grace, match=_is_cache_temp)
        return removed

    def __repr__(self) -> str:
        return f"DescriptorCache({str(self.directory)!r})"

    # ----------------------------------------------------------- paths, meta

    def _folder(self, kind: str) -> Path:
        folder = self.directory / kind
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise QuestsError(
                f"cannot create the cache directory ({exc.strerror})", source=str(folder)
            ) from None
        return folder

    def _data_path(self, key: str, kind: str) -> Path:
        suffix = ".npy" if kind == "descriptors" else ".parquet"
        return self._folder(kind) / f"{key}{suffix}"

    def _meta_path(self, key: str, kind: str) -> Path:
        return self._folder(kind) / f"{key}.json"

    def _write_meta(
        self, key: str, kind: str, digest: str, size: int, extra: Mapping[str, Any]
    ) -> None:
        _write_json_atomic(
            self._meta_path(key, kind),
            {
                "cache_format": CACHE_FORMAT,
                "key": key,
                "sha256": digest,
                "size": size,
                "created": time.time(),
                **extra,
            },
        )

    def _check(self, key: str, kind: str, load: bool = False) -> tuple[Path, np.ndarray | None]:
        """Check an entry; returns its path and, with ``load``, its bytes (read once).

        The size is always checked and, depending on ``verify``, a checksum
        or the SHA-256 of the bytes after ``offset`` (the ``.npy`` header).
        Raises ``_Invalid`` for a missing, incomplete or corrupt entry (which
        is then deleted).
        """
        data, meta_path = self._data_path(key, kind), self._meta_path(key, kind)
        if not meta_path.exists():
            raise _Invalid(missing=True)
        try:
            meta = json.loads(meta_path.read_text())
            size, offset = int(meta["size"]), int(meta.get("offset", 0))
            if meta.get("cache_format") != CACHE_FORMAT or data.stat().st_size != size:
                raise ValueError("size")
            buf = None
            if load:
                buf = np.empty(size, dtype=np.uint8)  # not zero-filled, unlike bytearray
                view = memoryview(buf)
                with open(data, "rb", buffering=0) as fd:
                    got = 0
                    while got < size:
                        n = fd.readinto(view[got : got + _READ_BLOCK])
                        if not n:
                            break
                        got += n
                if got != size:
                    raise ValueError("short read")
            self._verify_content(meta, data, offset, buf)
            if kind == "descriptors":  # the header is not hashed: it must be the canonical one
                if buf is not None:
                    head = bytes(memoryview(buf)[:offset])
                else:
                    with open(data, "rb") as fd:
                        head = fd.read(offset)
                expected = _npy_header(tuple(meta["shape"]), np.dtype(meta["dtype"]))
                if head != expected:
                    raise ValueError("header")
        except (OSError, ValueError, KeyError, TypeError):
            log.warning(
                "cache entry %s/%s is incomplete or corrupt; it will be recomputed", kind, key
            )
            self.discard(key, kind)
            raise _Invalid(missing=False) from None
        return data, buf

    def _verify_content(
        self, meta: Mapping[str, Any], data: Path, offset: int, buf: np.ndarray | None
    ) -> None:
        mode = self.verify
        if mode == "checksum" and "checksum" not in meta:
            mode = "sha256"  # tables carry only SHA-256 (they are small)
        if mode == "size":
            return
        if mode == "checksum":
            got = (
                checksum_bytes(memoryview(buf)[offset:])
                if buf is not None
                else _checksum_file(data, offset)
            )
            expected = meta["checksum"]
        else:
            got = (
                hashlib.sha256(memoryview(buf)[offset:]).hexdigest()
                if buf is not None
                else _sha256_file(data, offset)
            )
            expected = meta["sha256"]
        if got != expected:
            raise ValueError("content check failed")

    def _valid_entry(self, key: str, kind: str) -> Path | None:
        """Path of a complete, uncorrupted entry, or None (a corrupt entry is deleted)."""
        try:
            return self._check(key, kind)[0]
        except _Invalid:
            return None

    def discard(self, key: str, kind: str = "descriptors") -> None:
        """Delete one entry (metadata first, so a half-deleted entry reads as missing)."""
        for path in (self._meta_path(key, kind), self._data_path(key, kind)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def clear(self) -> int:
        """Delete every entry and leftover temporary file; returns the number of files removed."""
        removed = 0
        for kind in ("descriptors", "tables"):
            folder = self.directory / kind
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                if path.is_file():
                    path.unlink()
                    removed += 1
        return removed

    def entries(self, kind: str = "descriptors") -> list[str]:
        """Keys of the entries of one kind that have metadata."""
        folder = self.directory / kind
        if not folder.is_dir():
            return []
        return sorted(p.stem for p in folder.glob("*.json"))

    # ----------------------------------------------------------------- arrays

    def get(self, key: str, mmap: bool = False) -> np.ndarray | None:
        """The array stored under ``key``, or None if absent or corrupt.

        Parameters
        ----------
        key : str
        mmap : bool
            Memory-map the file read-only instead of reading it.
        """
        try:
            path, buf = self._check(key, "descriptors", load=not mmap)
        except _Invalid:
            return None
        if buf is None:
            return self._load(key, path, mmap)
        try:
            return _array_from_npy_bytes(buf)
        except ValueError as exc:
            log.warning("cache entry %s unreadable (%s); recomputing", key, exc)
            self.discard(key)
            return None

    def _load(self, key: str, path: Path, mmap: bool) -> np.ndarray | None:
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as exc:
            log.warning("cache entry %s unreadable (%s); recomputing", key, exc)
            self.discard(key)
            return None

    def put(self, key: str, array: np.ndarray, params: Mapping[str, Any] | None = None) -> Path:
        """Store a 2-D array atomically under ``key``; returns the entry path."""
        array = np.asarray(array)
        if array.ndim == 1:
            array = array[:, None]
        with self.writer(key, array.shape[1], array.dtype, params) as writer:
            writer.append(array)
        return writer.final

    def writer(
        self,
        key: str,
        width: int | None = None,
        dtype: Any = np.float64,
        params: Mapping[str, Any] | None = None,
    ) -> _ArrayWriter:
        """A context manager that streams row blocks into the entry ``key``.

        The entry appears (atomically) only when the ``with`` block ends
        without an exception; otherwise the partial file is removed.
        """
        return _ArrayWriter(self, key, width, dtype, params)

    # ----------------------------------------------------------------- tables

    def get_table(self, key: str) -> pd.DataFrame | None:
        """The table stored under ``key``, or None if absent or corrupt."""
        path = self._valid_entry(key, "tables")
        if path is None:
            return None
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for damaged files
            log.warning("cache table %s unreadable (%s); recomputing", key, exc)
            self.discard(key, "tables")
            return None

    def put_table(self, key: str, table: pd.DataFrame) -> Path:
        """Store a table atomically as Parquet under ``key``; returns the entry path."""
        final = self._data_path(key, "tables")
        tmp = _temp_path(final)
        try:
            table.to_parquet(tmp, index=False)
            digest, size = _sha256_file(tmp), tmp.stat().st_size
            _fsync_replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._write_meta(
            key,
            "tables",
            digest,
            size,
            {"rows": len(table), "columns": [str(c) for c in table.columns]},
        )
        return final

    # ------------------------------------------------------------ high level

    def get_or_compute(
        self,
        structures: Atoms | Iterable[Atoms],
        k: int = 32,
        cutoff: float = 5.0,
        species: Sequence[str] | None = None,
        compute: Compute | None = None,
        dtype: Any = np.float64,
        mmap: bool = False,
    ) -> np.ndarray:
        """Descriptors of ``structures``, from the cache when possible.

        Parameters
        ----------
        structures : ase.Atoms, sequence of ase.Atoms or Dataset
        k, cutoff, species
            Descriptor parameters (part of the key).
        compute : callable, optional
            ``compute(list_of_atoms, k=k, cutoff=cutoff, species=species)`` ->
            array with one row per atom (or ``compute(list_of_atoms)`` if it
            takes no such keywords); default :func:`quests_core.descriptors`.
        dtype : numpy dtype
            dtype stored (part of the key).
        mmap : bool
            Return a read-only memory map of the entry.
        """
        from quests_core.dataset import Dataset

        if isinstance(structures, Dataset):
            return dataset_descriptors(
                structures, k, cutoff, species, compute=compute, cache=self, dtype=dtype, mmap=mmap
            )
        if isinstance(structures, Atoms):
            structures = [structures]
        structures = list(structures)
        key = descriptor_key(structures_digest(structures), k, cutoff, species, dtype)
        cached = self.get(key, mmap=mmap)
        n_atoms = sum(len(a) for a in structures)
        if cached is not None and cached.shape[0] == n_atoms:
            self.hits += 1
            return cached
        self.misses += 1
        x = _run_compute(compute, structures, k, cutoff, species)
        path = self.put(
            key,
            np.asarray(x, dtype=dtype),
            {"k": k, "cutoff": cutoff, "species": _species_param(species)},
        )
        return self._load(key, path, True) if mmap else np.asarray(x, dtype=dtype)


def _takes_parameters(compute: Compute) -> bool:
    """True if ``compute`` accepts ``k``, ``cutoff`` and ``species`` keywords."""
    import inspect

    try:
        params = inspect.signature(compute).parameters
    except (TypeError, ValueError):
        return True
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return True
    return all(name in params for name in ("k", "cutoff", "species"))


def _run_compute(
    compute: Compute | None,
    structures: list[Atoms],
    k: int,
    cutoff: float,
    species: Sequence[str] | None,
) -> np.ndarray:
    if compute is None:
        from quests_core import descriptors as compute
    if _takes_parameters(compute):
        x = np.asarray(compute(structures, k=k, cutoff=cutoff, species=species))
    else:  # a callable of the structures alone (parameters bound by the caller)
        x = np.asarray(compute(structures))
    n_atoms = sum(len(a) for a in structures)
    if x.ndim != 2 or x.shape[0] != n_atoms:
        raise ValueError(f"compute returned shape {x.shape} for {n_atoms} atoms")
    return x


# ----------------------------------------------------------------------------
# Streaming descriptors of files and datasets
# ----------------------------------------------------------------------------


class _GrowingArray:
    """Row blocks appended in place (``ndarray.resize``: large blocks grow by ``mremap``
    without a copy on Linux), so the peak stays near one copy of the result plus a block."""

    def __init__(self, dtype: Any):
        self.dtype = np.dtype(dtype)
        self.array: np.ndarray | None = None

    def append(self, block: np.ndarray) -> None:
        block = np.asarray(block)
        if self.array is None:
            self.array = np.array(block, dtype=self.dtype, order="C")
            return
        if block.ndim != 2 or block.shape[1] != self.array.shape[1]:
            raise ValueError(f"block of shape {block.shape} after {self.array.shape}")
        n = self.array.shape[0]
        self.array.resize((n + block.shape[0], self.array.shape[1]), refcheck=False)
        self.array[n:] = block

    def result(self) -> np.ndarray:
        return self.array if self.array is not None else np.empty((0, 0), dtype=self.dtype)


@dataclass
class FileDescriptors:
    """Result of :func:`file_descriptors`.

    Attributes
    ----------
    dataset : Dataset
        Lazy dataset of the file (per-frame table, no structures in memory).
    descriptors : numpy.ndarray
        One row per atom, in the order of ``dataset.frames``.
    from_cache : bool
        True when nothing had to be computed.
    key : str or None
        Cache key of the descriptors (None without a cache).
    """

    dataset: Any
    descriptors: np.ndarray
    from_cache: bool
    key: str | None


def _chunks(frames: Iterator[Any], max_atoms: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    n = 0
    for item in frames:
        if chunk and n + len(item.atoms) > max_atoms:
            yield chunk
            chunk, n = [], 0
        chunk.append(item)
        n += len(item.atoms)
    if chunk:
        yield chunk


def file_descriptors(
    path: str | os.PathLike,
    *,
    index: int | slice | str | None = ":",
    format: str | None = None,
    type_map: Mapping[int, str] | Sequence[str] | str | None = None,
    k: int = 32,
    cutoff: float = 5.0,
    species: Sequence[str] | None = None,
    compute: Compute | None = None,
    cache: DescriptorCache | None = None,
    dtype: Any = np.float64,
    chunk_atoms: int = _DEFAULT_CHUNK_ATOMS,
    label: str | None = None,
    time_step: float | None = None,
    mmap: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> FileDescriptors:
    """Descriptors of every atom of a file, streamed frame chunk by frame chunk.

    Frames are read one at a time and passed to ``compute`` in chunks of at
    most ``chunk_atoms`` atoms; with a cache the rows go straight to the cache
    file, so the structures are never all in memory. A second call with the
    same file content, selection and parameters reads the cache without
    parsing the file.

    Parameters
    ----------
    path, index, format, type_map
        What to read (see :func:`quests_core.io.iter_frames`).
    k, cutoff, species, dtype
        Descriptor parameters.
    compute : callable, optional
        ``compute(list_of_atoms, k=..., cutoff=..., species=...)``; default
        :func:`quests_core.descriptors`.
    cache : DescriptorCache, optional
        Without one everything is computed and kept in memory.
    chunk_atoms : int
        Atoms per ``compute`` call.
    label, time_step
        Fallback label and ps between frames for the per-frame table.
    mmap : bool
        Return the cached array memory-mapped (read-only).
    progress : callable, optional
        ``progress(frames_done, atoms_done)`` after each chunk.

    Raises
    ------
    QuestsError
        Naming file and frame for bad input; the cache is left unchanged.
    """
    from quests_core.dataset import RECORD_COLUMNS, Dataset, FileSpec, _index_to_text, frame_record
    from quests_core.io import detect_format, iter_frames, parse_type_map

    spath = str(path)
    fmt = detect_format(spath, format)
    tmap = parse_type_map(type_map)
    index_text = _index_to_text(index)
    spec = FileSpec(spath, index_text, format, tuple(sorted(tmap.items())))

    def finish(frames: pd.DataFrame, x: np.ndarray, hit: bool, key: str | None):
        frames = frames.copy()
        if label:
            frames.loc[frames["label"].fillna("") == "", "label"] = label
        if time_step is not None:
            missing = frames["time"].isna()
            frames.loc[missing, "time"] = frames.loc[missing, "frame"] * float(time_step)
        return FileDescriptors(Dataset.from_frames_table(frames, spec), x, hit, key)

    fkey = dkey = None
    if cache is not None:
        fkey = frames_key(spath, index_text, fmt, tmap)
        dkey = descriptor_key(fkey, k, cutoff, species, dtype)
        table = cache.get_table(fkey)
        x = cache.get(dkey, mmap=mmap)
        if table is not None and x is not None and x.shape[0] == int(table["n_atoms"].sum()):
            cache.hits += 1
            return finish(table, x, True, dkey)
        cache.misses += 1

    records: list[dict[str, Any]] = []
    blocks = _GrowingArray(dtype)
    writer = (
        cache.writer(
            dkey,
            None,
            dtype,
            {"k": k, "cutoff": cutoff, "species": _species_param(species), "source": spath},
        )
        if cache is not None and dkey is not None
        else None
    )
    n_atoms = 0
    try:
        frames_iter = iter_frames(spath, index=index, format=fmt, type_map=tmap or None)
        for chunk in _chunks(frames_iter, chunk_atoms):
            atoms_list = [item.atoms for item in chunk]
            x_chunk = _run_compute(compute, atoms_list, k, cutoff, species)
            if writer is not None:
                writer.append(x_chunk)
            else:
                blocks.append(x_chunk)
            for item in chunk:
                records.append(frame_record(item.atoms, spath, item.frame))
            n_atoms += len(x_chunk)
            del atoms_list, chunk, x_chunk
            if progress is not None:
                progress(len(records), n_atoms)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    table = pd.DataFrame.from_records(records, columns=list(RECORD_COLUMNS))
    if writer is None:
        return finish(table, blocks.result(), False, None)
    assert cache is not None and fkey is not None and dkey is not None
    cache.put_table(fkey, table)
    x = cache._load(dkey, writer.commit(), mmap)
    if x is None:  # pragma: no cover - only if the disk lost the file we just wrote
        raise QuestsError(
            "the cache entry vanished right after it was written", source=str(cache.directory)
        )
    return finish(table, x, False, dkey)


def dataset_descriptors(
    dataset: Any,
    k: int = 32,
    cutoff: float = 5.0,
    species: Sequence[str] | None = None,
    *,
    compute: Compute | None = None,
    cache: DescriptorCache | None = None,
    dtype: Any = np.float64,
    chunk_atoms: int = _DEFAULT_CHUNK_ATOMS,
    mmap: bool = False,
) -> np.ndarray:
    """Descriptors of every atom of a :class:`~quests_core.dataset.Dataset`, chunk by chunk.

    The cache key is the structure digest (:func:`structures_digest`), so the
    same structures give the same entry whether they came from a file, a
    subset or memory. Lazy datasets are streamed (twice on a cache miss: once
    to hash, once to compute).
    """
    key = None
    if cache is not None:
        key = descriptor_key(
            structures_digest(dataset.iter_structures()), k, cutoff, species, dtype
        )
        x = cache.get(key, mmap=mmap)
        if x is not None and x.shape[0] == dataset.n_atoms:
            cache.hits += 1
            return x
        cache.misses += 1
    blocks = _GrowingArray(dtype)
    writer = (
        cache.writer(
            key, None, dtype, {"k": k, "cutoff": cutoff, "species": _species_param(species)}
        )
        if cache is not None and key is not None
        else None
    )
    try:
        for _, chunk in dataset.iter_chunks(chunk_atoms):
            x_chunk = _run_compute(compute, chunk, k, cutoff, species)
            if writer is not None:
                writer.append(x_chunk)
            else:
                blocks.append(x_chunk)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is None:
        return blocks.result()
    assert cache is not None and key is not None
    out = cache._load(key, writer.commit(), mmap)
    if out is None:  # pragma: no cover
        raise QuestsError(
            "the cache entry vanished right after it was written", source=str(cache.directory)
        )
    return out
