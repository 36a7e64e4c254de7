"""From files and datasets to descriptors: streamed chunk by chunk, through the cache.

:func:`file_descriptors` (the CLI's path) reads a file frame by frame and
:func:`dataset_descriptors` (the dashboard's path, through
:meth:`quests_core.cache.DescriptorCache.get_or_compute`) walks a
:class:`~quests_core.dataset.Dataset`; both pass the structures to ``compute``
in chunks of at most ``chunk_atoms`` atoms.

Invariants
----------
- One key scheme (:mod:`quests_core.cache_keys`): the descriptors of an
  unmodified read of one file are keyed by (file digest, frame selection,
  format, type map, k, cutoff, species, dtype, descriptor version) in both
  functions, so what one computed the other reads; any other dataset is keyed
  by the digest of its structures.
- With a cache, rows go straight to the cache file (:meth:`DescriptorCache.writer`);
  an entry appears only complete, and an error leaves the cache unchanged.
- Memory: one chunk of structures and its descriptors, plus the result (in
  memory, or memory-mapped from the cache with ``mmap=True``). Without a cache
  the result grows in place (:class:`_GrowingArray`), never copied whole.

This module knows the cache only through its methods (``get``, ``get_table``,
``put_table``, ``writer``, ``_load``, ``hits``, ``misses``), so
:mod:`quests_core.cache` can import it without an import cycle.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from ase import Atoms

from quests_core.cache_keys import (
    descriptor_key,
    file_descriptor_key,
    species_param,
    structures_digest,
)
from quests_core.dataset import RECORD_COLUMNS, Dataset, FileSpec, _index_to_text, frame_record
from quests_core.errors import QuestsError
from quests_core.io import detect_format, iter_frames, parse_type_map
from quests_core.io_common import TruncatedFrameWarning, noting
from quests_core.io_mdanalysis import TopologyWarning, topology_path
from quests_core.settings import DEFAULTS

__all__ = ["FileDescriptors", "dataset_descriptors", "file_descriptors", "run_compute"]

Compute = Callable[..., np.ndarray]


# ----------------------------------------------------------------------------
# One compute call
# ----------------------------------------------------------------------------


def _takes_parameters(compute: Compute) -> bool:
    """True if ``compute`` accepts ``k``, ``cutoff`` and ``species`` keywords."""
    try:
        params = inspect.signature(compute).parameters
    except (TypeError, ValueError):
        return True
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return True
    return all(name in params for name in ("k", "cutoff", "species"))


def run_compute(
    compute: Compute | None,
    structures: list[Atoms],
    k: int,
    cutoff: float,
    species: Sequence[str] | None,
) -> np.ndarray:
    """``compute(structures, k=, cutoff=, species=)`` (default :func:`quests_core.descriptors`),
    checked to give one 2-D row per atom."""
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


def _entry_params(k: int, cutoff: float, species, **extra: Any) -> dict[str, Any]:
    return {"k": k, "cutoff": cutoff, "species": species_param(species), **extra}


def _committed(cache: Any, key: str, writer: Any, mmap: bool) -> np.ndarray:
    x = cache._load(key, writer.commit(), mmap)
    if x is None:  # pragma: no cover - only if the disk lost the file we just wrote
        raise QuestsError(
            "the cache entry vanished right after it was written", source=str(cache.directory)
        )
    return x


class _RowSink:
    """Where computed descriptor rows go: straight into the cache entry ``key`` (a
    :meth:`DescriptorCache.writer`), or into a growing array without a cache.

    ``with sink.guard():`` around the loop that fills it aborts the entry on any
    error, so an entry appears only complete.
    """

    def __init__(self, cache: Any, key: str | None, dtype: Any, params: dict[str, Any]):
        self.cache, self.key = cache, key
        self.writer = (cache.writer(key, None, dtype, params)
                       if cache is not None and key is not None else None)
        self.blocks = _GrowingArray(dtype) if self.writer is None else None

    def append(self, rows: np.ndarray) -> None:
        (self.writer if self.writer is not None else self.blocks).append(rows)

    @contextlib.contextmanager
    def guard(self) -> Iterator[_RowSink]:
        try:
            yield self
        except BaseException:
            if self.writer is not None:
                self.writer.abort()
            raise

    def result(self, mmap: bool) -> np.ndarray:
        """The rows: the committed cache entry (read back), or the array."""
        if self.writer is None:
            return self.blocks.result()
        return _committed(self.cache, self.key, self.writer, mmap)


# ----------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------


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
    time_from_steps : bool
        True when some frame's time is its MD step number times ``timestep_fs``.
    """

    dataset: Any
    descriptors: np.ndarray
    from_cache: bool
    key: str | None
    time_from_steps: bool = False


#: Key in a cached per-frame table's ``attrs``: the frames skipped while reading the file
#: as ``[frame, reason]`` pairs. A table without it (written before it existed) is a miss.
INPUT_NOTES = "quests_skipped_frames"
#: Key in a cached per-frame table's ``attrs``: the frames' MD step numbers (None where a
#: frame records none; an empty list when no frame does).
MD_STEPS = "quests_md_steps"
#: Key in a cached per-frame table's ``attrs``: the topology's warnings (virtual sites
#: left out, elements taken from masses), repeated on every cache hit.
TOPOLOGY_NOTES = "quests_topology_notes"


def skipped_of(table: pd.DataFrame) -> list[tuple[int, str]]:
    """``(frame, reason)`` of the frames skipped when the file of ``table`` was read."""
    return [(int(frame), str(reason)) for frame, reason in table.attrs.get(INPUT_NOTES, [])]


def md_step(atoms: Atoms) -> float | None:
    """The MD step number a frame records (a LAMMPS dump's ``ITEM: TIMESTEP``), or None."""
    value = atoms.info.get("timestep")
    try:
        step = float(value)
    except (TypeError, ValueError):
        return None
    return step if np.isfinite(step) else None


def read_table(records: Sequence[dict[str, Any]],
               skipped: Sequence[tuple[str, int, str]],
               steps: Sequence[float | None] = (),
               notes: Sequence[str] = ()) -> pd.DataFrame:
    """The per-frame table of a file's read as cached: what reading the file warned
    about travels with it in ``attrs`` (Parquet keeps them), so a cached rerun repeats
    it (:func:`repeat_skipped`) instead of silently giving fewer frames, and so do the
    MD step numbers (times of LAMMPS dumps, whatever the step length asked for later)."""
    table = pd.DataFrame.from_records(records, columns=list(RECORD_COLUMNS))
    table.attrs[INPUT_NOTES] = [[int(frame), str(reason)] for _path, frame, reason in skipped]
    table.attrs[MD_STEPS] = list(steps) if any(s is not None for s in steps) else []
    table.attrs[TOPOLOGY_NOTES] = [str(n) for n in notes]
    return table


def repeat_skipped(path: str, skipped: Sequence[tuple[int, str]]) -> None:
    """Warn again, on a cached result, about the frames skipped when the file was read
    (:class:`~quests_core.io.TruncatedFrameWarning`: the CLI prints it in one line)."""
    for frame, reason in skipped:
        warnings.warn(TruncatedFrameWarning(
            f"{path}: frame {frame}: {reason}; not read (result from the cache)"),
            stacklevel=3)


def file_descriptors(
    path: str | os.PathLike,
    *,
    index: int | slice | str | None = ":",
    format: str | None = None,
    type_map: Mapping[int, str] | Sequence[str] | str | None = None,
    k: int = DEFAULTS.k,
    cutoff: float = DEFAULTS.cutoff,
    species: Sequence[str] | None = None,
    compute: Compute | None = None,
    cache: Any = None,
    dtype: Any = np.float64,
    chunk_atoms: int = DEFAULTS.chunk_atoms,
    label: str | None = None,
    time_step: float | None = None,
    mmap: bool = False,
    progress: Callable[[int, int], None] | None = None,
    topology: str | os.PathLike | None = None,
    timestep_fs: float | None = None,
    topology_format: str | None = None,
) -> FileDescriptors:
    """Descriptors of every atom of a file, streamed frame chunk by frame chunk.

    Frames are read one at a time and passed to ``compute`` in chunks of at
    most ``chunk_atoms`` atoms; with a cache the rows go straight to the cache
    file, so the structures are never all in memory. A second call with the
    same file content, selection and parameters reads the cache without
    parsing the file, and so does
    :meth:`~quests_core.cache.DescriptorCache.get_or_compute` of the same
    read through :meth:`Dataset.from_files <quests_core.dataset.Dataset.from_files>`.

    Parameters
    ----------
    path, index, format, type_map, topology, topology_format
        What to read (see :func:`quests_core.io.iter_frames`); the topology
        used by an MD trajectory (given or found next to it,
        :func:`quests_core.io_mdanalysis.topology_path`) and its format, when
        named, are part of the cache key.
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
    timestep_fs : float, optional
        Length of one MD step (fs) for a LAMMPS dump's step numbers: ``time = step *
        timestep_fs / 1000`` ps where the frames carry no time (the steps are kept with
        the cached table, so a rerun with another length needs no new read);
        :attr:`FileDescriptors.time_from_steps` says when that happened.
    mmap : bool
        Return the cached array memory-mapped (read-only).
    progress : callable, optional
        ``progress(frames_done, atoms_done)`` after each chunk.

    Raises
    ------
    QuestsError
        Naming file and frame for bad input; the cache is left unchanged.
    """
    spath = str(path)
    fmt = detect_format(spath, format)
    tmap = parse_type_map(type_map)
    index_text = _index_to_text(index)
    used = topology_path(spath, fmt, topology)
    top_fmt = topology_format if used is not None else None
    spec = FileSpec(spath, index_text, format, tuple(sorted(tmap.items())), used, top_fmt)

    def finish(frames: pd.DataFrame, x: np.ndarray, hit: bool, key: str | None):
        skipped = skipped_of(frames)
        steps = np.asarray(frames.attrs.get(MD_STEPS) or [np.nan] * len(frames), np.float64)
        frames = frames.copy()
        frames.attrs.clear()
        if label:
            frames.loc[frames["label"].fillna("") == "", "label"] = label
        from_steps = False
        if timestep_fs is not None:
            use = frames["time"].isna().to_numpy() & np.isfinite(steps)
            frames.loc[use, "time"] = steps[use] * float(timestep_fs) / 1000.0
            from_steps = bool(use.any())
        if time_step is not None:
            missing = frames["time"].isna()
            frames.loc[missing, "time"] = frames.loc[missing, "frame"] * float(time_step)
        dataset = Dataset.from_frames_table(frames, spec)
        dataset.skipped_frames = [(spath, frame, reason) for frame, reason in skipped]
        return FileDescriptors(dataset, x, hit, key, from_steps)

    fkey = dkey = None
    if cache is not None:
        fkey, dkey = file_descriptor_key(
            spath, index_text, fmt, tmap, k, cutoff, species, dtype, topology=used,
            topology_format=top_fmt,
        )
        table = cache.get_table(fkey)
        x = cache.get(dkey, mmap=mmap)
        if (table is not None and x is not None
                and all(key in table.attrs for key in (INPUT_NOTES, MD_STEPS, TOPOLOGY_NOTES))
                and x.shape[0] == int(table["n_atoms"].sum())):
            cache.hits += 1
            for note in table.attrs[TOPOLOGY_NOTES]:  # as when the topology was read
                warnings.warn(TopologyWarning(str(note)), stacklevel=2)
            repeat_skipped(spath, skipped_of(table))
            return finish(table, x, True, dkey)
        cache.misses += 1

    records: list[dict[str, Any]] = []
    sink = _RowSink(cache, dkey, dtype, _entry_params(k, cutoff, species, source=spath))
    n_atoms = 0
    skipped: list[tuple[str, int, str]] = []
    steps: list[float | None] = []
    notes: list[str] = []  # topology warnings (virtual sites left out, ...)
    with noting(TopologyWarning, notes), sink.guard():
        frames_iter = iter_frames(
            spath, index=index, format=fmt, type_map=tmap or None, topology=used,
            skipped=skipped, topology_format=top_fmt,
        )
        for chunk in _chunks(frames_iter, chunk_atoms):
            atoms_list = [item.atoms for item in chunk]
            x_chunk = run_compute(compute, atoms_list, k, cutoff, species)
            sink.append(x_chunk)
            for item in chunk:
                records.append(frame_record(item.atoms, spath, item.frame))
                steps.append(md_step(item.atoms))
            n_atoms += len(x_chunk)
            del atoms_list, chunk, x_chunk
            if progress is not None:
                progress(len(records), n_atoms)
    table = read_table(records, skipped, steps, notes)
    if sink.writer is not None:
        cache.put_table(fkey, table)
    return finish(table, sink.result(mmap), False, dkey if sink.writer is not None else None)


# ----------------------------------------------------------------------------
# Datasets
# ----------------------------------------------------------------------------


def dataset_key(
    dataset: Dataset,
    k: int = DEFAULTS.k,
    cutoff: float = DEFAULTS.cutoff,
    species: Sequence[str] | None = None,
    dtype: Any = np.float64,
) -> tuple[str | None, str]:
    """``(frames key or None, descriptor key)`` of a dataset's descriptors.

    The file key of :func:`file_descriptors` when the dataset is an unmodified
    read of one file (:meth:`~quests_core.dataset.Dataset.file_source`), else
    ``(None, key of the structures digest)`` (lazy datasets are streamed once to hash).
    """
    source = dataset.file_source()
    if source is not None:
        fmt = detect_format(source.path, source.format)
        return file_descriptor_key(
            source.path, source.index, fmt, source.type_map_dict(), k, cutoff, species, dtype,
            topology=topology_path(source.path, fmt, source.topology),
            topology_format=source.topology_format,
        )
    digest = structures_digest(dataset.iter_structures())
    return None, descriptor_key(digest, k, cutoff, species, dtype)


def dataset_descriptors(
    dataset: Any,
    k: int = DEFAULTS.k,
    cutoff: float = DEFAULTS.cutoff,
    species: Sequence[str] | None = None,
    *,
    cache: Any = None,
    compute: Compute | None = None,
    chunk_atoms: int = DEFAULTS.chunk_atoms,
    dtype: Any = np.float64,
    mmap: bool = False,
) -> np.ndarray:
    """Descriptors of every atom of a :class:`~quests_core.dataset.Dataset`, chunk by chunk.

    With a cache the key is :func:`dataset_key`: an unmodified read of one file
    shares its entry with :func:`file_descriptors` of that file (and then also
    stores the file's per-frame table, so :func:`file_descriptors` is a hit
    afterwards); other datasets are keyed by their structures, so the same
    structures give the same entry whether they came from a subset or memory.
    """
    key = fkey = None
    if cache is not None:
        fkey, key = dataset_key(dataset, k, cutoff, species, dtype)
        x = cache.get(key, mmap=mmap)
        if x is not None and x.shape[0] == dataset.n_atoms:
            cache.hits += 1
            return x
        cache.misses += 1
    sink = _RowSink(cache, key, dtype, _entry_params(k, cutoff, species))
    source = dataset.specs[0].path if fkey is not None else ""
    frame_numbers = dataset.frames["frame"].to_numpy()
    records: list[dict[str, Any]] = []
    steps: list[float | None] = []
    with sink.guard():
        for first, chunk in dataset.iter_chunks(chunk_atoms):
            sink.append(run_compute(compute, chunk, k, cutoff, species))
            if fkey is not None:
                records.extend(
                    frame_record(atoms, source, int(frame_numbers[first + j]))
                    for j, atoms in enumerate(chunk)
                )
                steps.extend(md_step(atoms) for atoms in chunk)
    out = sink.result(mmap)
    if sink.writer is not None and fkey is not None:
        cache.put_table(fkey, read_table(records, dataset.skipped_frames, steps))
    return out
