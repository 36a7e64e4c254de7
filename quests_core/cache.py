"""Descriptor cache on disk, shared by the CLI and the dashboard.

Entries live in one directory (``$QUESTS_CACHE_DIR``, default
``~/.cache/quests-dashboard``):

* ``descriptors/<key>.npy``: a descriptor array (plain ``.npy``, readable with
  ``numpy.load``, memory-mappable);
* ``tables/<key>.parquet``: a per-frame or per-atom table (Parquet, so pandas,
  Dask and Datashader read it directly);
* ``<key>.json`` next to each: the entry format (:data:`ENTRY_FORMAT`), shape,
  dtype, size, and the BLAKE2b (32-byte digest) and SHA-256 of the data.

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
- An entry whose size, ``.npy`` header or BLAKE2b digest does not match its
  metadata is deleted and computed again (one :class:`CacheWarning` line naming
  it; the new entry replaces it atomically); a read never returns bytes that
  were not written. An entry of an earlier entry format (before the BLAKE2b
  digest) is a miss, recomputed and replaced without a word.
- A cache that cannot be used (an entry path that is a directory, a file that
  cannot be read or replaced) never stops a computation: the result is computed
  without the cache, with one :class:`CacheWarning` line naming the entry.
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
import tempfile
import time
import warnings
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
    "ENTRY_FORMAT",
    "CacheWarning",
    "DescriptorCache",
    "blake2b_bytes",
    "blake2b_file",
    "default_cache_dir",
]

log = logging.getLogger(__name__)

#: Environment variable that overrides the cache directory.
CACHE_ENV = "QUESTS_CACHE_DIR"
_HEADER_BYTES = 128
_READ_BLOCK = 1 << 22
#: Version of the entry files (metadata ``entry_format``): 2 adds the BLAKE2b
#: digest checked on every read; entries without it are misses.
ENTRY_FORMAT = 2
_DIGEST_SIZE = 32


class CacheWarning(UserWarning):
    """A cache entry was found damaged (and is recomputed) or the cache cannot be used
    (the result is computed without it); the message is one line naming the entry."""


def _new_blake2b() -> Any:
    return hashlib.blake2b(digest_size=_DIGEST_SIZE)


def blake2b_bytes(data: bytes | bytearray | memoryview) -> str:
    """BLAKE2b (32-byte digest, 64 hex digits) of a byte string."""
    h = _new_blake2b()
    h.update(memoryview(data).cast("B"))
    return h.hexdigest()


def blake2b_file(path: str | os.PathLike, offset: int = 0) -> str:
    """:func:`blake2b_bytes` of a file's bytes after ``offset``, read block by block."""
    h = _new_blake2b()
    with open(path, "rb") as fd:
        fd.seek(offset)
        while block := fd.read(_READ_BLOCK):
            h.update(block)
    return h.hexdigest()


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
    """Streams row blocks of a 2-D array into a cache entry (see :meth:`DescriptorCache.writer`).

    When the cache folder cannot hold the temporary file (or, on :meth:`commit`,
    the entry cannot be put in place) the rows go to a file outside the cache
    that :meth:`DescriptorCache._load` reads once and deletes: the computation
    goes on without the cache.
    """

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
        self.final = cache._data_path(key, "descriptors", create=False)
        try:
            self.final = cache._data_path(key, "descriptors")
            self.tmp = temp_path(self.final)
            self._fd = open(self.tmp, "wb")
        except (OSError, QuestsError) as exc:
            cache._unusable(key, "descriptors", self.final, exc)
            fd, name = tempfile.mkstemp(prefix="quests-uncached-", suffix=".npy")
            self.tmp = Path(name)
            self._fd = os.fdopen(fd, "wb")
            cache._detached.add(self.tmp)
        self._fd.write(b"\0" * _HEADER_BYTES)
        self._sha = hashlib.sha256()
        self._blake = _new_blake2b()
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
        self._sha.update(data)
        self._blake.update(data)
        self.rows += int(block.shape[0])

    def commit(self) -> Path:
        """Finish the file and move it into place; returns the entry path (or, when
        the cache cannot be used, the file outside it that holds the rows)."""
        if self.width is None:
            self.width = 0
        self._fd.seek(0)
        self._fd.write(_npy_header((self.rows, self.width), self.dtype))
        self._fd.flush()
        os.fsync(self._fd.fileno())
        self._fd.close()
        self.done = True
        if self.tmp in self.cache._detached:
            return self.tmp
        size = self.tmp.stat().st_size
        try:
            os.replace(self.tmp, self.final)
        except OSError as exc:
            self.cache._unusable(self.key, "descriptors", self.final, exc)
            self.cache._detached.add(self.tmp)
            return self.tmp
        self.cache._write_meta(
            self.key,
            "descriptors",
            self._sha.hexdigest(),
            size,
            {
                "blake2b": self._blake.hexdigest(),
                "offset": _HEADER_BYTES,
                "shape": [self.rows, self.width],
                "dtype": self.dtype.str,
                **self.params,
            },
        )
        return self.final

    def abort(self) -> None:
        """Drop the partial file; the cache is left as it was."""
        if not self._fd.closed:
            self._fd.close()
        self.tmp.unlink(missing_ok=True)
        self.cache._detached.discard(self.tmp)
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
        default) adds the BLAKE2b digest of the content (about 0.9 GB/s),
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
        #: files outside the cache (or not put in place) holding rows computed without it
        self._detached: set[Path] = set()
        #: entries already reported as unusable (one warning each)
        self._reported: set[tuple[str, str]] = set()
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
            with contextlib.suppress(OSError):
                removed += remove_stale_temp_files(
                    self.directory / kind, grace, match=_is_cache_temp
                )
        return removed

    def __repr__(self) -> str:
        return f"DescriptorCache({str(self.directory)!r})"

    # ----------------------------------------------------------- paths, meta

    def _folder(self, kind: str, create: bool = True) -> Path:
        folder = self.directory / kind
        if not create:
            return folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise QuestsError(
                f"cannot create the cache directory ({exc.strerror})", source=str(folder)
            ) from None
        return folder

    def _data_path(self, key: str, kind: str, create: bool = True) -> Path:
        suffix = ".npy" if kind == "descriptors" else ".parquet"
        return self._folder(kind, create) / f"{key}{suffix}"

    def _meta_path(self, key: str, kind: str, create: bool = True) -> Path:
        return self._folder(kind, create) / f"{key}.json"

    def _warn(self, text: str) -> None:
        """One :class:`CacheWarning` line (the CLI prints ``warning: ...``)."""
        warnings.warn(" ".join(text.split()), CacheWarning, stacklevel=4)

    def _unusable(self, key: str, kind: str, path: Path, exc: BaseException) -> None:
        """Report once that entry ``kind/key`` cannot be used (computing without it)."""
        if (kind, key) in self._reported:
            return
        self._reported.add((kind, key))
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        if isinstance(exc, OSError) and path.is_dir():
            reason = "it is a directory"
        self._warn(f"cache entry {path} cannot be used ({reason}); computing without the cache")

    def _write_meta(
        self, key: str, kind: str, digest: str, size: int, extra: Mapping[str, Any]
    ) -> bool:
        """Write the metadata that makes an entry complete; False (one warning) if it cannot."""
        path = self._meta_path(key, kind, create=False)
        try:
            write_json_atomic(
                path,
                {
                    "cache_format": CACHE_FORMAT,
                    "entry_format": ENTRY_FORMAT,
                    "key": key,
                    "sha256": digest,
                    "size": size,
                    "created": time.time(),
                    **extra,
                },
            )
        except OSError as exc:
            self._unusable(key, kind, path, exc)
            return False
        return True

    def _check(self, key: str, kind: str, load: bool = False) -> tuple[Path, np.ndarray | None]:
        """Check an entry; returns its path and, with ``load``, its bytes (read once).

        The size is always checked and, depending on ``verify``, the BLAKE2b
        digest or the SHA-256 of the bytes after ``offset`` (the ``.npy``
        header). Raises ``_Invalid`` for a missing entry, one of an earlier
        entry format, an incomplete or corrupt one (deleted, one warning) and
        one that cannot be read (one warning; computed without the cache).
        """
        data = self._data_path(key, kind, create=False)
        meta_path = self._meta_path(key, kind, create=False)
        if not os.path.lexists(meta_path):
            raise _Invalid(missing=True)
        for path in (meta_path, data):
            if os.path.lexists(path) and not path.is_file():
                self._unusable(key, kind, path, OSError(0, "not a regular file"))
                raise _Invalid(missing=False)
        try:
            meta = json.loads(meta_path.read_text())
            if not isinstance(meta, dict):
                raise ValueError("metadata is not an object")
        except (OSError, ValueError) as exc:
            return self._corrupt(key, kind, exc)
        if meta.get("cache_format") != CACHE_FORMAT or meta.get("entry_format") != ENTRY_FORMAT:
            log.debug("cache entry %s/%s has an earlier format; recomputing it", kind, key)
            self.discard(key, kind)
            raise _Invalid(missing=True)
        try:
            size, offset = int(meta["size"]), int(meta.get("offset", 0))
            if data.stat().st_size != size:
                raise ValueError("its size differs from the metadata's")
            buf = self._read_all(data, size) if load else None
            self._verify_content(meta, data, offset, buf)
            if kind == "descriptors":  # the header is not hashed: it must be the canonical one
                if buf is not None:
                    head = bytes(memoryview(buf)[:offset])
                else:
                    with open(data, "rb") as fd:
                        head = fd.read(offset)
                expected = _npy_header(tuple(meta["shape"]), np.dtype(meta["dtype"]))
                if head != expected:
                    raise ValueError("its .npy header differs from the metadata's")
        except PermissionError as exc:
            self._unusable(key, kind, data, exc)
            raise _Invalid(missing=False) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return self._corrupt(key, kind, exc)
        return data, buf

    def _corrupt(self, key: str, kind: str, exc: BaseException) -> Any:
        """Warn (one line), delete the entry and raise ``_Invalid``."""
        if isinstance(exc, FileNotFoundError):
            reason = "its data file is missing"
        elif isinstance(exc, (KeyError, TypeError)):
            reason = f"its metadata lacks {exc}"
        else:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        entry = self._data_path(key, kind, create=False)
        self._warn(f"cache entry {entry} is damaged ({reason}); recomputing it")
        self.discard(key, kind)
        raise _Invalid(missing=False)

    @staticmethod
    def _read_all(path: Path, size: int) -> np.ndarray:
        """The ``size`` bytes of a file, read once into an uninitialised buffer."""
        buf = np.empty(size, dtype=np.uint8)  # not zero-filled, unlike bytearray
        view = memoryview(buf)
        with open(path, "rb", buffering=0) as fd:
            got = 0
            while got < size:
                n = fd.readinto(view[got : got + _READ_BLOCK])
                if not n:
                    break
                got += n
        if got != size:
            raise ValueError("the file is shorter than its size")
        return buf

    def _verify_content(
        self, meta: Mapping[str, Any], data: Path, offset: int, buf: np.ndarray | None
    ) -> None:
        mode = self.verify
        if mode == "size":
            return
        if mode == "checksum":
            got = (
                blake2b_bytes(memoryview(buf)[offset:])
                if buf is not None
                else blake2b_file(data, offset)
            )
            expected, name = meta["blake2b"], "BLAKE2b"
        else:
            got = (
                hashlib.sha256(memoryview(buf)[offset:]).hexdigest()
                if buf is not None
                else sha256_file(data, offset)
            )
            expected, name = meta["sha256"], "SHA-256"
        if got != expected:
            raise ValueError(f"its {name} digest does not match: changed on disk")

    def _valid_entry(self, key: str, kind: str) -> Path | None:
        """Path of a complete, uncorrupted entry, or None (a corrupt entry is deleted)."""
        try:
            return self._check(key, kind)[0]
        except _Invalid:
            return None

    def discard(self, key: str, kind: str = "descriptors") -> None:
        """Delete one entry (metadata first, so a half-deleted entry reads as missing).

        A path that is not a file (a directory) is left alone.
        """
        for path in (self._meta_path(key, kind, False), self._data_path(key, kind, False)):
            with contextlib.suppress(OSError):
                if not path.is_dir():
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
        """The array stored under ``key``, or None if absent, damaged or unusable.

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
            entry = self._data_path(key, "descriptors", create=False)
            self._warn(f"cache entry {entry} is unreadable ({exc}); recomputing it")
            self.discard(key)
            return None

    def _load(self, key: str, path: Path, mmap: bool) -> np.ndarray | None:
        """The array of an entry file (a file holding rows computed without the cache is
        read once and deleted; a map of it stays valid on POSIX)."""
        detached = path in self._detached
        try:
            return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError) as exc:
            if detached:
                raise
            self._warn(f"cache entry {path} is unreadable ({exc}); recomputing it")
            self.discard(key)
            return None
        finally:
            if detached:
                self._detached.discard(path)
                with contextlib.suppress(OSError):
                    path.unlink()

    def put(self, key: str, array: np.ndarray, params: Mapping[str, Any] | None = None) -> Path:
        """Store a 2-D array atomically under ``key``; returns the entry path.

        When the entry cannot be written (one warning) nothing is stored and the
        path returned does not hold the array.
        """
        array = np.asarray(array)
        if array.ndim == 1:
            array = array[:, None]
        writer = self.writer(key, array.shape[1], array.dtype, params)
        try:
            writer.append(array)
        except BaseException:
            writer.abort()
            raise
        path = writer.commit()
        if path in self._detached:
            self._detached.discard(path)
            path.unlink(missing_ok=True)
            return writer.final
        return path

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
        """The table stored under ``key``, or None if absent, damaged or unusable."""
        path = self._valid_entry(key, "tables")
        if path is None:
            return None
        try:
            return pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for damaged files
            self._warn(f"cache entry {path} is unreadable ({exc}); recomputing it")
            self.discard(key, "tables")
            return None

    def put_table(self, key: str, table: pd.DataFrame) -> Path:
        """Store a table atomically as Parquet under ``key``; returns the entry path.

        When the entry cannot be written (one warning) nothing is stored and the
        path returned does not hold the table.
        """
        final = self._data_path(key, "tables", create=False)
        try:
            final = self._data_path(key, "tables")
            tmp = temp_path(final)
        except (OSError, QuestsError) as exc:
            self._unusable(key, "tables", final, exc)
            return final
        try:
            table.to_parquet(tmp, index=False)
            size = tmp.stat().st_size
            digest, blake = sha256_file(tmp), blake2b_file(tmp)
            fsync_replace(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            self._unusable(key, "tables", final, exc)
            return final
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._write_meta(
            key,
            "tables",
            digest,
            size,
            {"blake2b": blake, "rows": len(table), "columns": [str(c) for c in table.columns]},
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
        x = np.asarray(x, dtype=dtype)
        path = self.put(key, x, {"k": k, "cutoff": cutoff, "species": species_param(species)})
        if mmap and path.is_file():
            mapped = self._load(key, path, True)
            if mapped is not None:
                return mapped
        return x
