"""Out-of-core dH of trajectories larger than memory: chunk by chunk, resumable.

:func:`chunked_delta_entropy` reads the selected frames of one or more files in
chunks of ``chunk_frames`` frames, computes the descriptors and ``dH`` against
a reference of every chunk, and writes each finished chunk as its own Parquet
part files in a store directory::

    store/
      manifest.json                     parameters, file plan, finished chunks
      atoms/part-000-000000.parquet     per-atom rows of chunk 0 of file 0
      frames/part-000-000000.parquet    per-frame rows of the same chunk
      descriptors/part-000-000000.npy   (only with save_descriptors=True)

Only one chunk is in memory at a time, and within it the descriptors of one
block of ``block_atoms`` atoms (a frame larger than that is computed block by
block, its per-atom part written one Parquet row group per block). Every part
file is written to a temporary name and renamed into place, and the manifest
(rewritten atomically after each chunk) is the only record of which chunks are
finished: a run killed at any point loses at most the chunk it was computing.
The manifest records each part's size and BLAKE2b digest: on resuming, a chunk
whose part is missing or of another size is computed again, and a part of the
recorded size whose digest differs is refused ("refusing to resume: part X
changed"), since something other than this code wrote it.
Running the same
call again skips the finished chunks (they are neither read nor recomputed)
and computes the rest; a call whose parameters differ from the store's raises
:class:`~quests_core.errors.QuestsError` (use a new store, or ``overwrite=True``).

Tables use the column names of ``docs/architecture.md``. Per-atom parts:
``structure, frame, time, label, generation, atom, species, x, y, z, dH``;
per-frame parts: the per-frame columns plus ``mean_dH``, ``frac_novel`` and ``max_dH``
(``atom_offset`` is filled in by
:meth:`quests_core.chunk_store.ChunkStore.frames`).

With a ``dask.distributed`` client the unfinished chunks run as tasks on the
cluster's workers (which must see the input files and the store directory);
the calling process alone writes the manifest.

Reading a store (:class:`~quests_core.chunk_store.ChunkStore`,
:func:`~quests_core.chunk_store.read_atoms_dask`) is
:mod:`quests_core.chunk_store` and the Dask plumbing (:func:`dask_client`,
:data:`KERNEL_LOCK`) is :mod:`quests_core.dask_tools`; this module imports
both (for its own use: it exports none of their names) and never
:mod:`quests_core.distributed`. Defaults of ``h``, ``k``, ``cutoff``, ``precision``, ``backend``
and threads are those of :data:`quests_core.settings.DEFAULTS`.

Progress, e.g. with tqdm::

    with tqdm(unit="frame") as bar:
        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)
        chunked_delta_entropy("traj.extxyz", x_ref, "store", progress=progress)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._validate import check_bandwidth, check_descriptors, check_k_cutoff
from .atomic import atomic_path as _atomic_path
from .atomic import remove_stale_temp_files
from .backend import Backend, select_backend
from .cache_keys import TOPOLOGY_RULES, file_digest
from .chunk_store import (
    KINDS,
    MANIFEST_NAME,
    STORE_FORMAT,
    STORE_VERSION,
    ChunkStore,
    _part_path,
    _read_manifest,
    check_part,
    part_digest,
    remove_leftovers,
)
from .dask_tools import KERNEL_LOCK, dask_client
from .dataset import file_paths, frame_record
from .descriptors import DESCRIPTOR_VERSION, FrameDescriptors, descriptor_width
from .errors import Cancelled, QuestsError
from .export import write_json, write_table
from .io import count_frames, detect_format, iter_frames, parse_index, parse_type_map
from .io_mdanalysis import topology_path
from .settings import DEFAULTS, normalize_species
from .threads import thread_limit

__all__ = [
    "ChunkPlan",
    "ChunkedRun",
    "FilePlan",
    "chunked_delta_entropy",
    "plan_chunks",
]

DEFAULT_CHUNK_FRAMES = 16
DEFAULT_BLOCK_ATOMS = 1_000_000

ProgressFn = Callable[[int, int], None]


# ----------------------------------------------------------------------------
# Plans
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FilePlan:
    """One input file and its selected frames ``range(start, stop, step)``.

    ``topology`` is the topology file naming the atoms of an MD trajectory
    (given, or found next to it: :func:`quests_core.io_mdanalysis.topology_path`),
    None for the formats that need none; ``topology_format`` its MDAnalysis format
    when named (an Amber ``.top``).
    """

    path: str
    format: str
    start: int
    stop: int
    step: int
    n_frames: int
    first_structure: int
    topology: str | None = None
    topology_format: str | None = None


@dataclass(frozen=True)
class ChunkPlan:
    """One chunk: frames ``range(start, stop, step)`` of file number ``file``."""

    id: str
    file: int
    chunk: int
    start: int
    stop: int
    step: int
    n_frames: int
    first_structure: int


def _chunk_id(file: int, chunk: int) -> str:
    return f"{file:03d}-{chunk:06d}"


def _selected_range(path: str, fmt: str, index) -> range:
    selection = parse_index(index)
    n = count_frames(path, fmt)
    if isinstance(selection, int):
        if not -n <= selection < n:
            raise QuestsError(
                f"frame {selection} does not exist (file has {n} frames)", source=path
            )
        i = selection % n
        return range(i, i + 1)
    frames = range(*selection.indices(n))
    if len(frames) == 0:
        raise QuestsError(f"index {index!r} selects no frames (file has {n} frames)", source=path)
    return frames


def plan_chunks(
    paths: Sequence[str | os.PathLike],
    index: int | slice | str | None = ":",
    format: str | None = None,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    topology: str | os.PathLike | None = None,
    topology_format: str | None = None,
) -> tuple[list[FilePlan], list[ChunkPlan]]:
    """Split the selected frames of every file into chunks of ``chunk_frames`` frames.

    The frames of each file are counted first (a fast scan for extxyz and
    LAMMPS dumps); chunks never span two files. Each :class:`FilePlan` records
    the topology its frames are read with (``topology``, or the one next to an
    MD trajectory).
    """
    if isinstance(chunk_frames, bool) or int(chunk_frames) != chunk_frames or chunk_frames < 1:
        raise QuestsError(f"chunk_frames must be an integer >= 1, got {chunk_frames!r}")
    chunk_frames = int(chunk_frames)
    files: list[FilePlan] = []
    chunks: list[ChunkPlan] = []
    first = 0
    for f, path in enumerate(paths):
        spath = str(path)
        fmt = detect_format(spath, format)
        frames = _selected_range(spath, fmt, index)
        used = topology_path(spath, fmt, topology)
        files.append(
            FilePlan(
                spath, fmt, frames.start, frames.stop, frames.step, len(frames), first,
                used, topology_format if used is not None else None,
            )
        )
        for c, lo in enumerate(range(0, len(frames), chunk_frames)):
            part = frames[lo : lo + chunk_frames]
            chunks.append(
                ChunkPlan(
                    _chunk_id(f, c), f, c, part.start, part.stop, part.step, len(part), first + lo
                )
            )
        first += len(frames)
    return files, chunks


# ----------------------------------------------------------------------------
# Parameters and manifest
# ----------------------------------------------------------------------------


def _reference_digest(x: np.ndarray) -> str:
    h = hashlib.sha256(np.asarray(x.shape, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(x, dtype=np.float64).tobytes())
    return h.hexdigest()


def _index_text(index) -> str:
    """Canonical text of a frame selection (``":"``, ``"3"``, ``"2:10:2"``)."""
    parsed = parse_index(index)
    if isinstance(parsed, int):
        return str(parsed)
    return ":".join("" if v is None else str(v) for v in (parsed.start, parsed.stop, parsed.step))


def _json_normal(value: Any) -> Any:
    """The value as it reads back from JSON (tuples become lists, numpy becomes Python)."""
    text = json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v))
    return json.loads(text)


def _param_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a != b:
            text_a, text_b = json.dumps(a), json.dumps(b)
            if len(text_a) > 60 or len(text_b) > 60:
                out.append(key)
            else:
                out.append(f"{key}: {text_a} -> {text_b}")
    return out


def _write_manifest(store: Path, manifest: Mapping[str, Any]) -> None:
    write_json(store / MANIFEST_NAME, manifest)


def _finished_on_disk(store: Path, manifest: Mapping[str, Any]) -> dict[str, dict]:
    """Chunks of the manifest whose part files are the ones recorded.

    A chunk with a missing part or a part of another size (a run killed while
    rewriting it, a truncated copy) is computed again, and so is a chunk
    recorded without part digests (a store of version 1); a part of the
    recorded size whose BLAKE2b digest differs was changed after it was written,
    and the store is refused rather than mixed.
    """
    out = {}
    for cid, record in manifest["chunks"].items():
        digests = record.get("blake2b")
        if digests is None:
            continue
        ok = True
        for rel, size in record["files"].items():
            problem = check_part(store, rel, size, digests[rel])
            if problem == "changed":
                raise QuestsError(
                    f"refusing to resume: part {rel} changed (its BLAKE2b digest differs from "
                    "the manifest's); overwrite the store (overwrite=True; --overwrite in the "
                    "CLI) or use another",
                    source=str(store),
                )
            if problem:
                ok = False
                break
        if ok:
            out[cid] = record
    return out


def _clear_store(store: Path) -> None:
    """Remove what a chunk store holds (only its own files and folders)."""
    (store / MANIFEST_NAME).unlink(missing_ok=True)
    for kind in KINDS:
        folder = store / kind
        if folder.is_dir():
            shutil.rmtree(folder)


# ----------------------------------------------------------------------------
# One chunk
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    """What every chunk needs besides its frames (picklable for Dask workers)."""

    store: str
    k: int
    cutoff: float
    species: tuple[str, ...] | None
    h: float
    precision: str
    label: str | None
    time_step: float | None
    positions: bool
    save_descriptors: bool
    type_map: tuple[tuple[int, str], ...]
    backend: Backend
    n_threads: int | None = None
    block_atoms: int = 1_000_000


def _frame_table(items, plan: ChunkPlan, ctx: _Context) -> pd.DataFrame:
    """Per-frame rows of one chunk (the dH columns are added once dH is known)."""
    records = [
        frame_record(it.atoms, it.source, it.frame, label=ctx.label, time_step=ctx.time_step)
        for it in items
    ]
    frames = pd.DataFrame.from_records(records)
    frames.insert(0, "structure", np.arange(len(items), dtype=np.int64) + plan.first_structure)
    return frames


def _add_dh_columns(frames: pd.DataFrame, dh: np.ndarray) -> pd.DataFrame:
    counts = frames["n_atoms"].to_numpy(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    frames["mean_dH"] = np.add.reduceat(dh, starts) / counts
    frames["frac_novel"] = np.add.reduceat((dh > 0).astype(np.float64), starts) / counts
    frames["max_dH"] = np.maximum.reduceat(dh, starts)
    return frames


def _atom_rows(frames: pd.DataFrame, j: int, atoms, a0: int, a1: int, dh: np.ndarray,
               ctx: _Context) -> pd.DataFrame:
    """Per-atom rows of atoms ``a0 .. a1 - 1`` of frame ``j`` of the chunk."""
    rows = np.full(a1 - a0, j)
    table: dict[str, Any] = {}
    for column in ("structure", "frame", "time", "label", "generation"):
        table[column] = frames[column].to_numpy()[rows]
    table["atom"] = np.arange(a0, a1, dtype=np.int64)
    if ctx.positions:
        from ase.data import chemical_symbols

        table["species"] = np.asarray(chemical_symbols, dtype=object)[atoms.numbers[a0:a1]]
        xyz = atoms.positions[a0:a1]
        table["x"], table["y"], table["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    table["dH"] = dh
    return pd.DataFrame(table)


class _RowGroupWriter:
    """Appends tables to one Parquet file, one row group per :meth:`write`."""

    def __init__(self, path: Path):
        self.path = path
        self.writer = None
        self.schema = None

    def write(self, table: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrow = pa.Table.from_pandas(table, schema=self.schema, preserve_index=False)
        if self.writer is None:
            self.schema = arrow.schema
            self.writer = pq.ParquetWriter(self.path, self.schema)
        self.writer.write_table(arrow)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _compute_chunk(items, plan: ChunkPlan, x_ref: np.ndarray, ctx: _Context, cancel=None) -> dict:
    """Descriptors and dH of one chunk, atom block by atom block; write its part files;
    return its manifest record.

    Each frame's neighbour cloud is built once; descriptors exist only for one
    block of ``ctx.block_atoms`` atoms at a time and the per-atom part is written
    as one Parquet row group per block, so a single frame of tens of millions of
    atoms fits in memory (its positions, the cloud and 8 bytes of dH per atom).
    """
    t0 = time.perf_counter()
    if len(items) != plan.n_frames:
        raise QuestsError(
            f"chunk {plan.id}: read {len(items)} frames, expected {plan.n_frames} "
            "(file changed since the frames were counted?)",
            source=items[0].source if items else None,
        )
    species = list(ctx.species) if ctx.species else []
    frames = _frame_table(items, plan, ctx)
    counts = frames["n_atoms"].to_numpy(np.int64)
    dh = np.empty(int(counts.sum()))
    dtype = np.float32 if ctx.precision == "float32" else np.float64
    store = Path(ctx.store)
    atoms_rel, frames_rel = _part_path("atoms", plan.id), _part_path("frames", plan.id)
    desc_rel = _part_path("descriptors", plan.id)
    with contextlib.ExitStack() as stack:
        # parts are written under temporary names and renamed into place on success
        atoms_out = _RowGroupWriter(stack.enter_context(_atomic_path(store / atoms_rel)))
        desc_out = None
        if ctx.save_descriptors:
            from numpy.lib.format import open_memmap

            desc_out = open_memmap(stack.enter_context(_atomic_path(store / desc_rel)),
                                   mode="w+", dtype=dtype,
                                   shape=(len(dh), descriptor_width(ctx.k, len(species))))
        stack.enter_context(thread_limit(ctx.n_threads))
        row = 0
        for j, it in enumerate(items):
            try:
                frame = FrameDescriptors(it.atoms, ctx.k, ctx.cutoff, species)
            except QuestsError as exc:  # "FILE: frame N: problem"
                raise QuestsError(f"frame {it.frame}: {exc.detail}", source=it.source) from None
            for a0 in range(0, frame.n_atoms, ctx.block_atoms):
                a1 = min(a0 + ctx.block_atoms, frame.n_atoms)
                x = frame.rows(a0, a1).astype(dtype, copy=False)
                logs = ctx.backend.log_kernel_sums(
                    x, x_ref, np.array([ctx.h]), precision=ctx.precision, cancel=cancel
                )
                block = -logs[:, 0]
                dh[row + a0 : row + a1] = block
                atoms_out.write(_atom_rows(frames, j, it.atoms, a0, a1, block, ctx))
                if desc_out is not None:
                    desc_out[row + a0 : row + a1] = x
            row += frame.n_atoms
        atoms_out.close()
        if desc_out is not None:
            desc_out.flush()
            del desc_out
    write_table(_add_dh_columns(frames, dh), store / frames_rel)
    rels = [atoms_rel, frames_rel, *([desc_rel] if ctx.save_descriptors else [])]
    files = {rel: (store / rel).stat().st_size for rel in rels}
    return {
        "file": plan.file,
        "chunk": plan.chunk,
        "first_structure": plan.first_structure,
        "first_frame": plan.start,
        "n_frames": plan.n_frames,
        "n_atoms": int(len(dh)),
        "files": files,
        "blake2b": {rel: part_digest(store / rel) for rel in rels},
        "seconds": round(time.perf_counter() - t0, 4),
    }


def _read_chunk_frames(file: FilePlan, plan: ChunkPlan, type_map):
    """The frames of one chunk (reads the file up to the chunk's last frame)."""
    return list(
        iter_frames(
            file.path,
            index=slice(plan.start, plan.stop, plan.step),
            format=file.format,
            type_map=dict(type_map) or None,
            topology=file.topology,
            topology_format=file.topology_format,
        )
    )


def _chunk_task(file: FilePlan, plan: ChunkPlan, x_ref: np.ndarray, ctx: _Context) -> tuple:
    """A Dask task: read, compute and write one chunk; return ``(id, record)``.

    Reading runs in parallel with other tasks of the worker; the computation
    holds the worker's kernel lock (one Numba computation per process).
    """
    items = _read_chunk_frames(file, plan, ctx.type_map)
    with KERNEL_LOCK:
        return plan.id, _compute_chunk(items, plan, x_ref, ctx)


# ----------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------


@dataclass
class ChunkedRun:
    """What a :func:`chunked_delta_entropy` call did.

    Attributes
    ----------
    store : ChunkStore
        The store, to read the results.
    computed : list of str
        Chunk ids computed by this call, in order of completion.
    skipped : list of str
        Chunk ids already finished by an earlier call.
    seconds : float
        Wall time of the call.
    """

    store: ChunkStore
    computed: list[str]
    skipped: list[str]
    seconds: float

    @property
    def complete(self) -> bool:
        return self.store.complete


def _runs(todo: list[ChunkPlan]) -> list[list[ChunkPlan]]:
    """Consecutive chunks of the same file, so each run is read in one pass."""
    runs: list[list[ChunkPlan]] = []
    for plan in todo:
        if runs and runs[-1][-1].file == plan.file and runs[-1][-1].chunk + 1 == plan.chunk:
            runs[-1].append(plan)
        else:
            runs.append([plan])
    return runs


def chunked_delta_entropy(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    reference: np.ndarray,
    store: str | os.PathLike,
    h: float = DEFAULTS.bandwidth,
    *,
    k: int = DEFAULTS.k,
    cutoff: float = DEFAULTS.cutoff,
    species: Sequence[str] | None = None,
    index: int | slice | str | None = ":",
    format: str | None = None,
    type_map: Mapping[int, str] | Sequence[str] | str | None = None,
    topology: str | os.PathLike | None = None,
    topology_format: str | None = None,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
    block_atoms: int = DEFAULT_BLOCK_ATOMS,
    precision: str = DEFAULTS.precision,
    label: str | None = None,
    time_step: float | None = None,
    positions: bool = True,
    save_descriptors: bool = False,
    overwrite: bool = False,
    backend: str | Backend | None = DEFAULTS.backend,
    n_threads: int | None = DEFAULTS.threads,
    client=None,
    progress: ProgressFn | None = None,
    cancel=None,
) -> ChunkedRun:
    """Per-atom dH of trajectories against a reference, chunk by chunk, into a Parquet store.

    Parameters
    ----------
    paths : path or sequence of paths
        Trajectory files (anything :func:`quests_core.io.iter_frames` reads).
    reference : numpy.ndarray
        Reference descriptors ``(n_ref, width)``, made with the same ``k``,
        ``cutoff`` and ``species``.
    store : path
        The store directory (created if missing).
    h : float
        Bandwidth (Å^-1).
    k, cutoff, species
        Descriptor parameters.
    index, format, type_map
        Frame selection applied to every file, ASE format, LAMMPS type map.
    topology : path-like, optional
        The topology file naming the atoms of MD trajectories (XTC, TRR, DCD,
        Amber NetCDF); default: the one next to each trajectory. The SHA-256
        of the topology used is part of the store's parameters, so a store is
        not resumed with another one.
    topology_format : str, optional
        MDAnalysis's format of ``topology`` when its ending does not say it (``"TOP"``
        for an Amber ``.top``); part of the store's parameters when given.
    chunk_frames : int
        Frames per chunk (one chunk is in memory at a time).
    block_atoms : int
        Atoms whose descriptors exist at once (default 1,000,000, 0.5 GB at
        k = 32): big frames are computed in blocks of atoms, so a single frame
        of tens of millions of atoms needs memory for its positions, its
        neighbour cloud and 8 bytes of dH per atom only. Does not change the
        results (a store can resume with another value).
    precision : {"float64", "float32"}
        Working precision of the kernel sums (float32: about twice as fast,
        dH within 1e-3 nats).
    label, time_step
        Fallback label and ps between frames for the tables.
    positions : bool
        Write ``species, x, y, z`` in the per-atom parts (default True).
    save_descriptors : bool
        Also keep each chunk's descriptors as ``descriptors/part-*.npy``.
    overwrite : bool
        Delete an existing store's contents first instead of resuming.
    backend : str or Backend
        Kernel-sum backend (see :mod:`quests_core.backend`); default ``DEFAULTS.backend``.
    n_threads : int, optional
        Numba and BLAS threads per chunk.
    client : dask.distributed.Client or str, optional
        Compute the unfinished chunks as tasks on this cluster (a client, a
        scheduler address, or ``"local"`` for a LocalCluster started for the
        call); the workers must see the files and the store.
    progress : callable, optional
        ``progress(frames_done, frames_total)`` at the start and after each chunk.
    cancel : object with ``is_set()``, optional
        Stop after the current chunk (raises :class:`~quests_core.errors.Cancelled`);
        finished chunks are kept.

    Returns
    -------
    ChunkedRun

    Raises
    ------
    QuestsError
        For bad input (naming file and frame) and when the store holds a run
        with other parameters.
    """
    t0 = time.perf_counter()
    paths = file_paths(paths)
    k, cutoff = check_k_cutoff(k, cutoff)
    harr, scalar = check_bandwidth(h)
    if not scalar:
        raise QuestsError("chunked dH takes one bandwidth h (a number), got an array")
    if precision not in ("float32", "float64"):
        raise QuestsError(f"precision must be 'float32' or 'float64', got {precision!r}")
    if isinstance(block_atoms, bool) or int(block_atoms) != block_atoms or block_atoms < 1:
        raise QuestsError(f"block_atoms must be an integer >= 1, got {block_atoms!r}")
    normal = normalize_species(species)
    species_list = list(normal) if normal else None
    x_ref = check_descriptors(reference, "reference descriptors")
    width = descriptor_width(k, len(species_list) if species_list else 0)
    if x_ref.shape[1] != width:
        raise QuestsError(
            f"reference descriptors have {x_ref.shape[1]} columns, k={k} "
            f"{'and species ' + ','.join(species_list) + ' ' if species_list else ''}"
            f"give {width}"
        )
    ref_digest = _reference_digest(x_ref)  # of the given values, before the precision cast
    x_ref = x_ref.astype(np.float32 if precision == "float32" else np.float64, copy=False)
    tmap = parse_type_map(type_map)
    engine = select_backend(backend)

    files, plans = plan_chunks(
        paths, index=index, format=format, chunk_frames=chunk_frames, topology=topology,
        topology_format=topology_format,
    )
    root = Path(store)
    params = _json_normal(
        {
            **_topology_params(files),
            "files": [
                {
                    "path": _path_from_store(f.path, root),
                    "size": os.path.getsize(f.path),
                    "sha256": file_digest(f.path),
                }
                for f in files
            ],
            "index": _index_text(index),
            "format": format,
            "type_map": sorted(tmap.items()),
            "k": k,
            "cutoff": cutoff,
            "species": species_list,
            "h": float(harr[0]),
            "precision": precision,
            "chunk_frames": int(chunk_frames),
            "reference": {"shape": list(x_ref.shape), "sha256": ref_digest},
            "label": label,
            "time_step": time_step,
            "positions": bool(positions),
            "save_descriptors": bool(save_descriptors),
            # saved descriptor parts must share one column layout (docs/spec.md 1.1)
            **({"descriptor_version": DESCRIPTOR_VERSION} if save_descriptors else {}),
        }
    )
    manifest = _open_store(root, params, overwrite)
    manifest["files"] = [asdict(f) for f in files]
    manifest["plan"] = [plan.id for plan in plans]
    finished = _finished_on_disk(root, manifest)
    manifest["chunks"] = finished
    manifest["complete"] = all(p.id in finished for p in plans)
    for kind in KINDS[: 3 if save_descriptors else 2]:
        (root / kind).mkdir(parents=True, exist_ok=True)
    _write_manifest(root, manifest)

    ctx = _Context(
        store=str(root),
        k=k,
        cutoff=cutoff,
        species=tuple(species_list) if species_list else None,
        h=float(harr[0]),
        precision=precision,
        label=label,
        time_step=time_step,
        positions=bool(positions),
        save_descriptors=bool(save_descriptors),
        type_map=tuple(sorted(tmap.items())),
        backend=engine,
        n_threads=n_threads,
        block_atoms=int(block_atoms),
    )
    total = sum(f.n_frames for f in files)
    skipped = [p.id for p in plans if p.id in finished]
    done = sum(p.n_frames for p in plans if p.id in finished)
    todo = [p for p in plans if p.id not in finished]
    computed: list[str] = []
    if progress is not None:
        progress(done, total)

    def record(cid: str, rec: dict) -> None:
        nonlocal done
        manifest["chunks"][cid] = rec
        manifest["complete"] = len(manifest["chunks"]) == len(plans)
        _write_manifest(root, manifest)
        computed.append(cid)
        done += rec["n_frames"]
        if progress is not None:
            progress(done, total)

    if client is not None:
        _run_on_client(client, files, todo, x_ref, ctx, record, cancel)
    else:
        for run in _runs(todo):
            _run_sequence(files[run[0].file], run, x_ref, ctx, record, cancel)
    return ChunkedRun(ChunkStore(root), computed, skipped, time.perf_counter() - t0)


def _topology_params(files: Sequence[FilePlan]) -> dict[str, Any]:
    """``{"topology": [SHA-256 or None per file]}`` when some file has a topology, else ``{}``
    (the parameters of stores of files without one are those of earlier versions)."""
    if all(f.topology is None for f in files):
        return {}
    out: dict[str, Any] = {
        "topology": [None if f.topology is None else file_digest(f.topology) for f in files],
        "topology_rules": TOPOLOGY_RULES}  # how elements are found: a change recomputes
    if any(f.topology_format for f in files):  # stores without one keep their parameters
        out["topology_format"] = [f.topology_format for f in files]
    return out


def _path_from_store(path: str, store: Path) -> str:
    """An input's path relative to the store (POSIX style), so that a store moved
    together with its inputs still resumes; absolute where no relative path exists."""
    try:
        return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(store))).as_posix()
    except ValueError:  # another drive (Windows)
        return os.path.abspath(path)


def _open_store(root: Path, params: dict, overwrite: bool) -> dict:
    """The manifest to continue from (a fresh one for a new or overwritten store)."""
    fresh = {"format": STORE_FORMAT, "version": STORE_VERSION, "params": params, "chunks": {}}
    if root.exists() and not root.is_dir():
        raise QuestsError("store path exists and is not a directory", source=str(root))
    if (root / MANIFEST_NAME).exists():
        if overwrite:
            _clear_store(root)
            return fresh
        manifest = _read_manifest(root)
        remove_leftovers(root)
        diff = _param_diff(manifest["params"], params)
        if diff:
            raise QuestsError(
                "holds a run with other parameters (" + "; ".join(diff) + "); "
                "use another store, or overwrite it (overwrite=True; --overwrite in the CLI)",
                source=str(root),
            )
        # a store of version 1 (no part digests): its chunks are computed again
        manifest["version"] = STORE_VERSION
        return manifest
    if root.is_dir():  # a run killed while writing its first manifest left only that
        remove_stale_temp_files(root, match=lambda n: n.startswith(f".{MANIFEST_NAME}."))
    if root.is_dir() and any(root.iterdir()):
        if overwrite and not any(p.name not in KINDS for p in root.iterdir()):
            _clear_store(root)
        else:
            raise QuestsError(
                "directory is not empty and has no manifest.json (not a chunk store)",
                source=str(root),
            )
    root.mkdir(parents=True, exist_ok=True)
    return fresh


def _check_cancel(cancel) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("chunked computation cancelled; finished chunks are kept")


def _run_sequence(file: FilePlan, run: list[ChunkPlan], x_ref, ctx, record, cancel) -> None:
    """Consecutive chunks of one file, read in a single pass."""
    _check_cancel(cancel)
    frames = iter_frames(
        file.path,
        index=slice(run[0].start, run[-1].stop, run[0].step),
        format=file.format,
        type_map=dict(ctx.type_map) or None,
        topology=file.topology,
        topology_format=file.topology_format,
    )
    position = 0
    items: list[Any] = []
    for item in frames:
        items.append(item)
        plan = run[position]
        if len(items) == plan.n_frames:
            record(plan.id, _compute_chunk(items, plan, x_ref, ctx, cancel))
            items = []
            position += 1
            if position == len(run):
                return
            _check_cancel(cancel)
    if position < len(run):
        _compute_chunk(items, run[position], x_ref, ctx, cancel)  # raises: too few frames


def _run_on_client(client, files, todo, x_ref, ctx, record, cancel) -> None:
    from distributed import as_completed

    if not todo:
        return
    with dask_client(client) as c:
        ref_future = c.scatter(x_ref, broadcast=True, hash=False)
        futures = [
            c.submit(_chunk_task, files[p.file], p, ref_future, ctx, pure=False) for p in todo
        ]
        try:
            for future in as_completed(futures):
                cid, rec = future.result()
                record(cid, rec)
                _check_cancel(cancel)
        finally:
            c.cancel([f for f in futures if not f.done()])


