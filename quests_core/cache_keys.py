"""Content digests and cache keys: the one key scheme of the descriptor cache.

Two kinds of content are keyed:

* **a read of one file** (:func:`file_descriptor_key`): the SHA-256 of the
  file's bytes, the frame selection (canonical text), the resolved format and
  the LAMMPS type map and, for an MD trajectory, the SHA-256 of the topology
  file that names its atoms (:func:`frames_key`), then ``k``, the cutoff, the species
  (:func:`quests_core.settings.normalize_species`), the dtype and the
  descriptor version (:func:`descriptor_key`). The CLI
  (:func:`quests_core.pipeline.file_descriptors`) and the dashboard
  (:meth:`quests_core.cache.DescriptorCache.get_or_compute` of a
  :class:`~quests_core.dataset.Dataset` that is an unmodified read of one
  file) both use it, so descriptors computed by one are a hit for the other;
* **structures in memory** (:func:`structures_digest`): positions, cell, pbc
  and atomic numbers of every structure, in order; used for everything that
  is not an unmodified read of one file (subsets, concatenations, edited or
  generated structures).

Invariants
----------
- Keys are SHA-256 hex digests of canonical JSON (sorted keys); equal inputs
  give equal keys in every process, different parameters different keys.
- :func:`file_digest` is remembered per process only while the file's path,
  size, mtime and inode are unchanged.
- Nothing here reads more than one block (4 MiB) of a file at a time.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from ase import Atoms

from quests_core.errors import QuestsError
from quests_core.settings import normalize_species

__all__ = [
    "CACHE_FORMAT",
    "checksum_bytes",
    "descriptor_key",
    "file_descriptor_key",
    "file_digest",
    "frames_key",
    "result_key",
    "species_param",
    "structures_digest",
]

#: Bumped when the layout of cache entries changes.
CACHE_FORMAT = 1
_READ_BLOCK = 1 << 22
_CHECKSUM_BLOCK_WORDS = 512  # 4 KiB blocks


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


def sha256_file(path: str | os.PathLike, offset: int = 0) -> str:
    """SHA-256 of a file's bytes after ``offset``, read block by block."""
    h = hashlib.sha256()
    with open(path, "rb") as fd:
        fd.seek(offset)
        while block := fd.read(_READ_BLOCK):
            h.update(block)
    return h.hexdigest()


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


def checksum_file(path: str | os.PathLike, offset: int = 0) -> str:
    """:func:`checksum_bytes` of a file's bytes after ``offset``."""
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
        _FILE_DIGESTS[memo] = sha256_file(path)
    return _FILE_DIGESTS[memo]


def descriptor_version() -> str:
    """``quests_core.descriptors.DESCRIPTOR_VERSION`` (``"1"`` where it is not defined)."""
    module = importlib.import_module("quests_core.descriptors")
    return str(getattr(module, "DESCRIPTOR_VERSION", "1"))


def _digest_json(payload: Mapping[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def species_param(species: str | Sequence[str] | None) -> list[str] | None:
    """The species as keyed and recorded: :func:`~quests_core.settings.normalize_species`
    as a list (None for the single-component descriptor)."""
    normal = normalize_species(species)
    return list(normal) if normal else None


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
        A content digest (:func:`structures_digest`, or :func:`frames_key` of a file).
    k, cutoff, species, dtype
        The descriptor parameters.
    version : str, optional
        Descriptor version (default: :func:`descriptor_version`).
    """
    return _digest_json(
        {
            "cache_format": CACHE_FORMAT,
            "kind": "descriptors",
            "content": content,
            "k": int(k),
            "cutoff": repr(float(cutoff)),
            "species": species_param(species),
            "dtype": np.dtype(dtype).str,
            "version": version if version is not None else descriptor_version(),
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
    type_map: Mapping[int, str] | Mapping[str, str] | None = None,
    topology: str | os.PathLike | None = None,
    topology_format: str | None = None,
) -> str:
    """Cache key of a read of one file (content hash + frame selection + format + type map
    + topology).

    ``index`` is the canonical selection text and ``format`` the resolved format
    (see :func:`file_descriptor_key`); it keys the per-frame table of the file and,
    through :func:`descriptor_key`, its descriptors. ``topology`` is the topology
    file the read used (:func:`quests_core.io_mdanalysis.topology_path`: the elements
    of an MD trajectory come from it); its content digest enters the key only when
    it is given, so keys of reads without a topology are those of earlier versions;
    with it, the key also holds :data:`TOPOLOGY_RULES` (the version of the rules that
    turn a topology into elements: a change of them must not reuse descriptors) and
    ``topology_format`` when one is named. A type map of atom names
    (``{"MW": "O"}``) is keyed with its names.
    """
    payload: dict[str, Any] = {
        "cache_format": CACHE_FORMAT,
        "kind": "frames",
        "file": file_digest(path),
        "index": str(index),
        "format": format,
        "type_map": sorted(
            (t if isinstance(t, str) else int(t), str(s)) for t, s in (type_map or {}).items()
        ),
    }
    if topology is not None:
        payload["topology"] = file_digest(topology)
        payload["topology_rules"] = TOPOLOGY_RULES
        if topology_format:
            payload["topology_format"] = str(topology_format).strip().upper()
    return _digest_json(payload)


#: Version of the topology -> elements rules (:mod:`quests_core.io_mdanalysis`) in the
#: key of reads with a topology. 2: elements from masses before names, virtual sites
#: (mass 0: TIP4P's MW) left out of the frames.
TOPOLOGY_RULES = 2


def file_descriptor_key(
    path: str | os.PathLike,
    index: str,
    format: str,
    type_map: Mapping[int, str] | None,
    k: int,
    cutoff: float,
    species: str | Sequence[str] | None = None,
    dtype: Any = np.float64,
    topology: str | os.PathLike | None = None,
    topology_format: str | None = None,
) -> tuple[str, str]:
    """``(frames key, descriptor key)`` of the descriptors of a read of one file.

    ``index`` must be canonical (``quests_core.dataset._index_to_text``),
    ``format`` resolved (``quests_core.io.detect_format``) and ``topology`` the
    topology file used (``quests_core.io_mdanalysis.topology_path``, None for the
    formats that need none), as both the CLI and the dashboard paths pass them.
    """
    fkey = frames_key(path, index, format, type_map, topology, topology_format)
    return fkey, descriptor_key(fkey, k, cutoff, species, dtype)
