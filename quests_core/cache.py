"""Descriptor cache on disk, shared by the CLI and the dashboard.

Entries live in one directory (``$QUESTS_CACHE_DIR``, default
``~/.cache/quests-dashboard``):

* ``descriptors/<key>.npy``: a descriptor array (plain ``.npy``, readable with
  ``numpy.load``, memory-mappable);
* ``tables/<key>.parquet``: a per-frame or per-atom table (Parquet, so pandas,
  Dask and Datashader read it directly);
* ``<key>.json`` next to each: shape, dtype, size, checksum and SHA-256 of the data.

Keys come from :mod:`quests_core.cache_keys` (one scheme: a read of one file is
keyed by the file's bytes, frame selection, format and type map, anything else
by the digest of its structures; both with k, cutoff, species, dtype and the
descriptor version). The streaming of files and datasets into the cache is
:mod:`quests_core.pipeline`; the atomic writes are :mod:`quests_core.atomic`.
This module imports those names for its own use and exports none of them.

Invariants
----------
- Every write goes to a temporary file in the same directory that is then
  renamed over the entry, and the metadata is written last: a process killed
  mid-write never leaves an entry that reads as complete.
- An entry whose size, ``.npy`` header or checksum does not match its metadata
  is deleted and computed again; a read never returns bytes that were not written.
- Memory: reading an entry holds it once (or maps it, ``mmap=True``); writing
  streams row blocks (:meth:`DescriptorCache.writer`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ase import Atoms

from quests_core.atomic import (
    STALE_TEMP_SECONDS,
    fsync_replace,
    remove_stale_temp_files,
    temp_path,
    write_json_atomic,
)
from quests_core.cache_keys import (
    CACHE_FORMAT,
    checksum_bytes,
    checksum_file,
    descriptor_key,
    sha256_file,
    species_param,
    structures_digest,
)
from quests_core.dataset import Dataset
from quests_core.errors import QuestsError
from quests_core.pipeline import (
    Compute,
    dataset_descriptors,
    run_compute,
)
from quests_core.settings import DEFAULTS

__all__ = [
    "DescriptorCache",
    "default_cache_dir",
]

log = logging.getLogger(__name__)

#: Environment variable that overrides the cache directory.
CACHE_ENV = "QUESTS_CACHE_DIR"
_HEADER_BYTES = 128
_READ_BLOCK = 1 << 22


def default_cache_dir() -> Path:
    """``$QUESTS_CACHE_DIR`` if set, else ``~/.cache/quests-dashboard``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "quests-dashboard"


# ----------------------------------------------------------------------------
# Entry files
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
        self.tmp = temp_path(self.final)
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
        checksum = checksum_file(self.tmp, _HEADER_BYTES)
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
        modified for ``grace`` seconds (see :func:`quests_core.atomic.is_stale_temp`);
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
        write_json_atomic(
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
                else checksum_file(data, offset)
            )
            expected = meta["checksum"]
        else:
            got = (
                hashlib.sha256(memoryview(buf)[offset:]).hexdigest()
                if buf is not None
                else sha256_file(data, offset)
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
        tmp = temp_path(final)
        try:
            table.to_parquet(tmp, index=False)
            digest, size = sha256_file(tmp), tmp.stat().st_size
            fsync_replace(tmp, final)
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
        k: int = DEFAULTS.k,
        cutoff: float = DEFAULTS.cutoff,
        species: Sequence[str] | None = None,
        compute: Compute | None = None,
        dtype: Any = np.float64,
        mmap: bool = False,
    ) -> np.ndarray:
        """Descriptors of ``structures``, from the cache when possible.

        Parameters
        ----------
        structures : ase.Atoms, sequence of ase.Atoms or Dataset
            A :class:`~quests_core.dataset.Dataset` goes through
            :func:`quests_core.pipeline.dataset_descriptors`: keyed by its file
            (the entry of :func:`file_descriptors`) when it is an unmodified read
            of one file, else by its structures.
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
        x = run_compute(compute, structures, k, cutoff, species)
        path = self.put(
            key,
            np.asarray(x, dtype=dtype),
            {"k": k, "cutoff": cutoff, "species": species_param(species)},
        )
        return self._load(key, path, True) if mmap else np.asarray(x, dtype=dtype)
