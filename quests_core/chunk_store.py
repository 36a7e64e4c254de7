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
- Opening a store removes the temporary files of dead writers only
  (:func:`remove_leftovers`); a live writer's files are left alone.
- Memory: :meth:`ChunkStore.atoms` and :meth:`ChunkStore.frames` load the
  finished parts (for stores that fit); :func:`read_atoms_dask` reads them as a
  Dask dataframe, one partition per chunk, so no process holds every row.

This module imports neither :mod:`quests_core.chunked` nor
:mod:`quests_core.distributed`; both import it.
"""

from __future__ import annotations

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
    "STORE_FORMAT",
    "STORE_VERSION",
    "ChunkStore",
    "read_atoms_dask",
    "remove_leftovers",
]

STORE_FORMAT = "quests-chunk-store"
STORE_VERSION = 1
MANIFEST_NAME = "manifest.json"
KINDS = ("atoms", "frames", "descriptors")


def _read_manifest(store: Path) -> dict[str, Any]:
    path = store / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise QuestsError("not a chunk store (no manifest.json)", source=str(store)) from None
    except (OSError, ValueError) as exc:
        raise QuestsError(f"unreadable manifest ({exc})", source=str(path)) from None
    if not isinstance(manifest, dict) or manifest.get("format") != STORE_FORMAT:
        raise QuestsError("not a quests chunk-store manifest", source=str(path))
    if manifest.get("version") != STORE_VERSION:
        raise QuestsError(
            f"chunk store version {manifest.get('version')!r}, this code reads {STORE_VERSION}",
            source=str(path),
        )
    return manifest


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
        return sorted(self.manifest.get("chunks", {}), key=lambda c: order.get(c, len(order)))

    @property
    def n_atoms(self) -> int:
        """Atoms in the finished chunks."""
        return int(sum(r["n_atoms"] for r in self.manifest.get("chunks", {}).values()))

    def part_paths(self, kind: str = "atoms") -> list[Path]:
        """Part files of the finished chunks (``"atoms"``, ``"frames"`` or ``"descriptors"``)."""
        if kind not in KINDS:
            raise QuestsError(f"unknown part kind {kind!r}; use one of {KINDS}")
        chunks = self.manifest.get("chunks", {})
        out = []
        for cid in self.chunk_ids:
            rel = _part_path(kind, cid)
            if rel not in chunks[cid].get("files", {}):
                raise QuestsError(f"chunk {cid} has no {kind} part", source=str(self.path))
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
        parts = [np.load(p) for p in self.part_paths("descriptors")]
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
