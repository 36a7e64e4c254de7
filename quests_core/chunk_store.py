"""Reading a chunk store (written by :func:`quests_core.chunked.chunked_delta_entropy`).

A store is a directory::

    store/
      manifest.json                     parameters, file plan, finished chunks
      atoms/part-000-000000.parquet     per-atom rows of chunk 0 of file 0
      frames/part-000-000000.parquet    per-frame rows of the same chunk
      descriptors/part-000-000000.npy   (only with save_descriptors=True)

Invariants
----------
- The manifest is the only record of which chunks are finished: a part file
  that the manifest does not list (a run killed before it could record it) is
  never read.
- The manifest (version 2) records the size and the BLAKE2b digest of every
  part file; a part is checked against both before it is read (the digest once
  per process while the file's stat is unchanged), and a part that is missing,
  of another size or changed is refused in one line naming it. Stores of
  version 1 (written before the digests) are still read, their parts checked
  by size only; resuming one computes its chunks again.
- A manifest whose structure is not the one written (``chunks`` not an object,
  a chunk record without ``files``/``n_atoms``/..., wrong types) is refused in
  one line naming the manifest.
- Opening a store removes the temporary files of dead writers only
  (:func:`remove_leftovers`); a live writer's files are left alone.
- Memory: :meth:`ChunkStore.atoms` and :meth:`ChunkStore.frames` load the
  finished parts (for stores that fit); :func:`read_atoms_dask` reads them as a
  Dask dataframe, one partition per chunk, so no process holds every row.

This module imports neither :mod:`quests_core.chunked` nor
:mod:`quests_core.distributed`; both import it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .atomic import STALE_TEMP_SECONDS, remove_stale_temp_files
from .errors import QuestsError

__all__ = [
    "KINDS",
    "MANIFEST_NAME",
    "READ_VERSIONS",
    "STORE_FORMAT",
    "STORE_VERSION",
    "ChunkStore",
    "check_part",
    "part_digest",
    "read_atoms_dask",
    "remove_leftovers",
]

STORE_FORMAT = "quests-chunk-store"
#: Version of the stores written: 2 records a BLAKE2b digest of every part file.
STORE_VERSION = 2
#: Versions read: 1 (before the digests: parts checked by size only) and 2.
READ_VERSIONS = (1, 2)
MANIFEST_NAME = "manifest.json"
KINDS = ("atoms", "frames", "descriptors")
#: the keys every chunk record of a manifest has (``blake2b`` from version 2 on)
CHUNK_KEYS = ("file", "chunk", "first_structure", "first_frame", "n_frames", "n_atoms", "files")
_READ_BLOCK = 1 << 22
_DIGEST_SIZE = 32


def part_digest(path: str | os.PathLike) -> str:
    """BLAKE2b (32-byte digest, 64 hex digits) of a part file, read block by block."""
    h = hashlib.blake2b(digest_size=_DIGEST_SIZE)
    with open(path, "rb") as fd:
        while block := fd.read(_READ_BLOCK):
            h.update(block)
    return h.hexdigest()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _chunk_problem(cid: Any, record: Any, version: int) -> str | None:
    """What is wrong with one chunk record of a manifest (None when it is well formed)."""
    if not isinstance(cid, str) or not cid:
        return f"chunk id {cid!r} is not a string"
    if not isinstance(record, dict):
        return f"chunk {cid} is {type(record).__name__}, not an object"
    missing = [k for k in CHUNK_KEYS if k not in record]
    if version >= 2 and "blake2b" not in record:
        missing.append("blake2b")
    if missing:
        return f"chunk {cid} lacks {', '.join(missing)}"
    for key in CHUNK_KEYS[:-1]:
        if not _is_int(record[key]) or record[key] < 0:
            return f"chunk {cid}: {key} is {record[key]!r}, not a count"
    files = record["files"]
    if not isinstance(files, dict) or not files:
        return f"chunk {cid}: files is {type(files).__name__}, not an object of part sizes"
    for rel, size in files.items():
        if not isinstance(rel, str) or not _is_int(size) or size < 0:
            return f"chunk {cid}: part {rel!r} has size {size!r}"
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            return f"chunk {cid}: part {rel!r} is outside the store"
    if version >= 2:
        digests = record["blake2b"]
        if not isinstance(digests, dict) or set(digests) != set(files):
            return f"chunk {cid}: blake2b does not list one digest per part"
        for rel, digest in digests.items():
            if not isinstance(digest, str) or len(digest) != 2 * _DIGEST_SIZE:
                return f"chunk {cid}: digest of part {rel} is {digest!r}"
    return None


def _manifest_problem(manifest: dict[str, Any]) -> str | None:
    """What is wrong with the structure of a manifest of a known version (None if nothing)."""
    if not isinstance(manifest.get("params"), dict):
        return "params is missing or not an object"
    chunks = manifest.get("chunks")
    if not isinstance(chunks, dict):
        return f"chunks is {type(chunks).__name__}, not an object of chunk records"
    plan = manifest.get("plan", [])
    if not isinstance(plan, list) or not all(isinstance(c, str) for c in plan):
        return "plan is not a list of chunk ids"
    if not isinstance(manifest.get("complete", False), bool):
        return "complete is not true or false"
    for cid, record in chunks.items():
        problem = _chunk_problem(cid, record, manifest["version"])
        if problem:
            return problem
    return None


def _read_manifest(store: Path) -> dict[str, Any]:
    """The manifest of a store, its structure checked (one-line error naming it)."""
    path = store / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise QuestsError("not a chunk store (no manifest.json)", source=str(store)) from None
    except (OSError, ValueError, RecursionError) as exc:
        text = getattr(exc, "strerror", None) or " ".join(str(exc).split())[:200]
        raise QuestsError(f"unreadable manifest ({text})", source=str(path)) from None
    if not isinstance(manifest, dict) or manifest.get("format") != STORE_FORMAT:
        raise QuestsError("not a quests chunk-store manifest", source=str(path))
    if manifest.get("version") not in READ_VERSIONS:
        raise QuestsError(
            f"chunk store version {manifest.get('version')!r}, this code reads "
            f"{' and '.join(map(str, READ_VERSIONS))}",
            source=str(path),
        )
    problem = _manifest_problem(manifest)
    if problem:
        raise QuestsError(f"malformed manifest: {problem}", source=str(path))
    return manifest


def check_part(store: Path, rel: str, size: int, digest: str | None) -> str | None:
    """Why part ``rel`` of a store is not the one recorded (None when it is).

    ``"missing"``, ``"size"`` (another size than recorded) or ``"changed"``
    (same size, another BLAKE2b digest; not checked when ``digest`` is None, a
    store of version 1). A digest once checked is remembered for the process
    while the file's size, mtime, ctime and inode stay the same.
    """
    path = store / rel
    try:
        st = path.stat()
    except OSError:
        return "missing"
    if not path.is_file():
        return "missing"
    if st.st_size != size:
        return "size"
    if digest is None:
        return None
    memo = (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, digest)
    if memo in _CHECKED:
        return None
    try:
        got = part_digest(path)
    except OSError:
        return "missing"
    if got != digest:
        return "changed"
    _CHECKED.add(memo)
    return None


_CHECKED: set[tuple] = set()


def _part_path(kind: str, chunk_id: str) -> str:
    suffix = ".npy" if kind == "descriptors" else ".parquet"
    return f"{kind}/part-{chunk_id}{suffix}"


def remove_leftovers(store: str | os.PathLike, grace: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Delete the temporary files a killed run left in a chunk store.

    Part files and the manifest are written to ``.<name>.<host>-<pid>.<random>.tmp``
    and renamed into place; a run killed mid-chunk leaves that file behind
    (e.g. ``atoms/.part-00000-00001.parquet.*.tmp``). Such a file is removed when
    its writer was a process of this machine that has ended, or, for a writer
    that cannot be checked (another machine of a cluster), when it was not
    modified for ``grace`` seconds: a concurrent writer's file is left alone.
    Called when a store is opened or resumed; returns the removed paths.
    """
    store = Path(store)
    removed = remove_stale_temp_files(store, grace, match=lambda n: n.startswith("."))
    for kind in KINDS:
        removed += remove_stale_temp_files(store / kind, grace,
                                           match=lambda n: n.startswith(".part-"))
    return removed



def _part_message(rel: str, problem: str) -> str:
    """The one-line refusal of a part that :func:`check_part` found wrong."""
    what = {
        "missing": "is missing",
        "size": "has another size than the manifest records",
        "changed": "changed after it was written (its BLAKE2b digest differs from the manifest's)",
    }[problem]
    return f"part {rel} {what}; the store must be recomputed (overwrite it)"


class ChunkStore:
    """Read access to a chunk store written by :func:`chunked_delta_entropy`.

    Only chunks recorded in the manifest are read (a part file written by a
    run that was killed before it could update the manifest is ignored).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.manifest = _read_manifest(self.path)
        #: leftover temporary files of killed runs removed on opening (see
        #: :func:`remove_leftovers`)
        self.removed_leftovers = remove_leftovers(self.path)

    def __repr__(self) -> str:
        return (
            f"ChunkStore({str(self.path)!r}, {len(self.chunk_ids)}/{len(self.plan)} chunks, "
            f"{self.n_atoms} atoms{', complete' if self.complete else ''})"
        )

    @property
    def params(self) -> dict[str, Any]:
        """The parameters of the run (files, h, k, cutoff, reference digest, ...)."""
        return self.manifest["params"]

    @property
    def plan(self) -> list[str]:
        """Every chunk id of the run, in order."""
        return list(self.manifest.get("plan", []))

    @property
    def complete(self) -> bool:
        """True when every planned chunk is finished."""
        return bool(self.manifest.get("complete", False))

    @property
    def chunk_ids(self) -> list[str]:
        """Finished chunk ids, in table order."""
        order = {cid: i for i, cid in enumerate(self.plan)}
        return sorted(self.manifest["chunks"], key=lambda c: order.get(c, len(order)))

    @property
    def n_atoms(self) -> int:
        """Atoms in the finished chunks."""
        return int(sum(r["n_atoms"] for r in self.manifest["chunks"].values()))

    def part_paths(self, kind: str = "atoms") -> list[Path]:
        """Part files of the finished chunks (``"atoms"``, ``"frames"`` or ``"descriptors"``).

        Every part is checked against the manifest first: its size and (stores
        of version 2) its BLAKE2b digest; a part that is missing, of another
        size or changed is refused in one line naming it.
        """
        if kind not in KINDS:
            raise QuestsError(f"unknown part kind {kind!r}; use one of {KINDS}")
        chunks = self.manifest["chunks"]
        out = []
        for cid in self.chunk_ids:
            rel = _part_path(kind, cid)
            record = chunks[cid]
            if rel not in record["files"]:
                raise QuestsError(f"chunk {cid} has no {kind} part", source=str(self.path))
            digest = record["blake2b"][rel] if "blake2b" in record else None
            problem = check_part(self.path, rel, record["files"][rel], digest)
            if problem:
                raise QuestsError(_part_message(rel, problem), source=str(self.path))
            out.append(self.path / rel)
        return out

    def atoms(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The per-atom table of the finished chunks (in memory: for stores that fit)."""
        parts = [pd.read_parquet(p, columns=columns) for p in self.part_paths("atoms")]
        if not parts:
            return pd.DataFrame(columns=list(columns) if columns else None)
        return pd.concat(parts, ignore_index=True)

    def frames(self) -> pd.DataFrame:
        """The per-frame table of the finished chunks, with ``atom_offset``."""
        parts = [pd.read_parquet(p) for p in self.part_paths("frames")]
        if not parts:
            return pd.DataFrame()
        table = pd.concat(parts, ignore_index=True)
        offsets = np.concatenate([[0], np.cumsum(table["n_atoms"].to_numpy(np.int64))[:-1]])
        table.insert(table.columns.get_loc("n_atoms") + 1, "atom_offset", offsets)
        return table

    def delta_entropy(self) -> np.ndarray:
        """dH of every atom of the finished chunks, in table order."""
        return self.atoms(columns=["dH"])["dH"].to_numpy()

    def descriptors(self) -> np.ndarray:
        """Descriptors of the finished chunks (needs ``save_descriptors=True``)."""
        parts = [np.load(p, allow_pickle=False) for p in self.part_paths("descriptors")]
        return np.concatenate(parts) if parts else np.empty((0, 0))

    def atoms_dask(self, columns: Sequence[str] | None = None):
        """The per-atom table as a Dask dataframe (one partition per chunk)."""
        return read_atoms_dask(self, columns=columns)


def read_atoms_dask(store, columns: Sequence[str] | None = None):
    """The per-atom table of a chunk store as a ``dask.dataframe`` (one partition per chunk).

    Only chunks recorded as finished in the store's manifest are read, so a
    store being written (or one whose run was interrupted) is read safely.
    Datashader aggregates such a frame partition by partition, so no process
    holds every point.

    Parameters
    ----------
    store : ChunkStore or path
        A store written by :func:`quests_core.chunked.chunked_delta_entropy`, or
        a folder of Parquet files (every ``*.parquet`` in it, sorted by name).
    columns : sequence of str, optional
        Columns to read (e.g. ``["x", "y", "dH"]``).
    """
    try:  # a dependency of the package; distributed is not needed to read
        import dask.dataframe as dd
    except ImportError:
        raise QuestsError(
            'reading a store as a Dask dataframe needs dask (pip install "dask[dataframe]")'
        ) from None

    if not isinstance(store, ChunkStore):
        path = Path(store)
        if (path / MANIFEST_NAME).is_file():
            store = ChunkStore(path)
        elif path.is_dir():
            files = sorted(str(p) for p in path.glob("*.parquet"))
            if not files:
                raise QuestsError("no Parquet files in the folder", source=str(path))
            return dd.read_parquet(files, columns=list(columns) if columns else None)
        else:
            raise QuestsError("not a chunk store or a folder of Parquet files", source=str(path))
    files = [str(p) for p in store.part_paths("atoms")]
    if not files:
        raise QuestsError("the store has no finished chunks yet", source=str(store.path))
    return dd.read_parquet(files, columns=list(columns) if columns else None)
