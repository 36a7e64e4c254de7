"""The loading and reference service of every front end: files -> descriptors -> reference, h.

The CLI (:mod:`quests_core.cli.loading`, a thin argparse and tqdm wrapper),
:func:`quests_core.watch.load_reference` and the dashboard's worker side
(:mod:`dashboard.compute`) load files and pick the bandwidth here, so the same
files and settings give the same descriptors and the same h in every front end.

- :class:`FileRequest`: what to read (path, frames, reader options, the
  front end's name and role for the file). Any object with these attributes
  will do (the dashboard passes its own ``FileSpec``).
- :func:`load_files`: every file streamed through
  :func:`quests_core.pipeline.file_descriptors` (the structures are never all
  in memory), read from or written to the descriptor cache, bad files skipped
  on request; ``.npz``/``.npy`` descriptor files with ``descriptor_files=True``.
- :func:`read_files` and :func:`compute_descriptors`: the same in two steps
  with the structures kept in memory (the dashboard draws atoms and clusters);
  both reads share one cache key, so what one computed the other reads.
- :class:`Loaded` (one per file, for every front end) and :class:`Batch`.
- :func:`reference`: the descriptors dH is measured against and the one
  bandwidth policy, returned as a :class:`ReferenceSet`;
  :func:`overlap_bandwidths`: h of every column of an overlap matrix.

The bandwidth policy (the one place it is decided)
---------------------------------------------------
- Fixed bandwidth: ``settings.bandwidth`` everywhere.
- Volume rule (SPEC section 2, :func:`quests_core.settings.frames_bandwidth`:
  h(V) of the atom-weighted mean volume per atom): h belongs to the density of
  the *reference*, the set the kernel sits on, so it is the volume rule of the
  structures dH is measured against:

  * with reference files, every selected frame of every reference file;
  * without one, each file is compared with its own first frame, so h is the
    volume rule of those first frames (of every file so compared, weighted by
    their atoms). The frames being tested do not set the kernel's width: a run
    that melts or expands would otherwise move h with its own result, and the
    numbers would change with the number of frames selected. (The CLI's
    ``trajectory`` always did this; the dashboard used every frame of every file
    until issue 20.)
  * a reference given as descriptors has no cells: only a fixed h applies.

- Overlap matrices (:func:`overlap_bandwidths`): with the volume rule, column j
  (dH against group j) uses group j's own h(V). When a group has no periodic
  cell, every column uses one h, the volume rule of all the matrix's frames that
  have a cell (pooled, atom-weighted), and a note says so; when no frame has a
  cell it is an error. (Before issue 20 the CLI stopped with that group's error
  and the dashboard fell back to the run's h.)

Invariants
----------
- An error about a structure names its file and frame; with ``skip_bad`` a bad
  file is listed in :attr:`Batch.skipped`, else the first one stops the batch.
  A batch has at least one file, else :class:`QuestsError` ("no usable ...").
- Progress hooks are called after every chunk (``progress(frames, atoms)``) or
  structure (``progress(done_atoms, total_atoms)``); a set ``cancel`` event
  raises :class:`quests_core.errors.Cancelled` at the next one.
- Memory: the descriptors of every file of the batch (a file is streamed in
  blocks of ``settings.chunk_atoms`` atoms while it is computed).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quests_core.errors import Cancelled, QuestsError
from quests_core.settings import Settings, frames_bandwidth

__all__ = [
    "Batch",
    "FileRequest",
    "Loaded",
    "ReferenceSet",
    "compute_descriptors",
    "load_files",
    "overlap_bandwidths",
    "read_files",
    "reference",
]

#: roles of the files that make the reference set of dH
REFERENCE_ROLES = ("reference",)


@dataclass(frozen=True)
class FileRequest:
    """One file to load: what to read and how the front end calls it.

    ``type_map`` is anything :func:`quests_core.io.parse_type_map` reads;
    ``topology``/``topology_format`` name the topology of an MD trajectory (None
    or "": the one next to it); ``time_step`` (ps between frames) and
    ``timestep_fs`` (fs per MD step) fill missing times; ``label`` is given to
    structures without one; ``name`` (default: the file name) and ``role``
    (``"reference"`` puts it in the reference set) are the front end's.
    """

    path: str
    index: str = ":"
    format: str | None = None
    type_map: Any = None
    topology: str | None = None
    topology_format: str | None = None
    time_step: float | None = None
    timestep_fs: float | None = None
    label: str = ""
    name: str = ""
    role: str = "input"


@dataclass
class Loaded:
    """One file loaded: its request, its dataset and (once computed) its descriptors.

    ``dataset`` is None for a descriptor file (``.npz``/``.npy``); ``from_cache``
    and ``key`` say whether the descriptors came from the cache and under which
    key; ``time_from_steps`` that some frame's time was made of its MD step.
    """

    spec: Any
    dataset: Any
    x: np.ndarray | None = None
    from_cache: bool = False
    seconds: float = 0.0
    key: str | None = None
    time_from_steps: bool = False

    @property
    def path(self) -> str:
        return str(self.spec.path)

    @property
    def name(self) -> str:
        return getattr(self.spec, "name", "") or Path(self.path).name

    @property
    def role(self) -> str:
        return getattr(self.spec, "role", "input")


@dataclass
class Batch:
    """The files of a batch that loaded, and the ones skipped (``(path, message)``)."""

    items: list[Loaded]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def _request(spec: Any) -> Any:
    return FileRequest(str(spec)) if isinstance(spec, (str, Path)) else spec


def _check(cancel: Any) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("computation cancelled")


def _descriptor_function(settings: Settings, cancel: Any = None,
                         progress: Callable[[list], Callable[[int, int], None]] | None = None):
    """``compute(structures, k=, cutoff=, species=)`` of the engine with the settings'
    threads; errors name the file and frame of the structure; ``cancel`` is checked
    before every chunk and ``progress(structures)`` gives the engine's per-structure
    callback."""
    import quests_core as qc
    from quests_core.io import locate_error

    def compute(structures, k=settings.k, cutoff=settings.cutoff, species=None):
        _check(cancel)
        extra = {} if progress is None else {"progress": progress(structures)}
        try:
            return qc.descriptors(structures, k=k, cutoff=cutoff, species=species,
                                  n_threads=settings.threads, **extra)
        except QuestsError as exc:
            raise locate_error(exc, structures) from None

    return compute


def load_files(
    specs: Iterable[Any],
    settings: Settings,
    *,
    cache: Any = None,
    skip_bad: bool = False,
    role: str = "input",
    descriptor_files: bool = False,
    file_progress: Callable[[str], Any] | None = None,
    on_loaded: Callable[[Loaded], None] | None = None,
    cancel: Any = None,
) -> Batch:
    """Descriptors of every file (streamed, cached).

    Parameters
    ----------
    specs : iterable of FileRequest (or paths)
        The files.
    settings : Settings
        k, cutoff, species, threads and chunk size.
    cache : DescriptorCache, optional
        The descriptor cache (None: compute everything).
    skip_bad : bool
        List a bad file in :attr:`Batch.skipped` and go on.
    role : str
        What the files are, for the "no usable files" error.
    descriptor_files : bool
        Read files ending in ``.npz``/``.npy`` as saved descriptors (checked
        against the settings' k, cutoff and species), not as structures.
    file_progress : callable, optional
        ``file_progress(path)`` gives a context manager yielding the file's
        ``progress(frames, atoms)`` callback (the CLI's progress bar).
    on_loaded : callable, optional
        Called with each :class:`Loaded` as soon as its file is done (the CLI
        warns about the file there).
    cancel : threading.Event-like, optional
        Checked before every chunk.

    Raises
    ------
    QuestsError
        For the first bad file without ``skip_bad``, or when no file is usable.
    """
    from quests_core.descriptor_files import SUFFIXES
    from quests_core.io import locate_error
    from quests_core.pipeline import file_descriptors

    compute = _descriptor_function(settings, cancel)
    batch = Batch([])
    for spec in map(_request, specs):
        path = str(spec.path)
        bar = file_progress(path) if file_progress is not None else contextlib.nullcontext()
        start = time.perf_counter()
        try:
            with bar as progress:
                if descriptor_files and Path(path).suffix.lower() in SUFFIXES:
                    loaded = Loaded(spec, None, _descriptor_file(path, settings))
                else:
                    res = file_descriptors(
                        path, index=getattr(spec, "index", ":") or ":",
                        format=getattr(spec, "format", None),
                        type_map=getattr(spec, "type_map", None) or None,
                        **settings.descriptor_kwargs(),
                        compute=compute, cache=cache, chunk_atoms=settings.chunk_atoms,
                        label=getattr(spec, "label", "") or None,
                        time_step=getattr(spec, "time_step", None),
                        timestep_fs=getattr(spec, "timestep_fs", None),
                        progress=progress,
                        topology=getattr(spec, "topology", None) or None,
                        topology_format=getattr(spec, "topology_format", None) or None,
                    )
                    loaded = Loaded(spec, res.dataset, res.descriptors, res.from_cache, 0.0,
                                    res.key, res.time_from_steps)
                if on_loaded is not None:
                    on_loaded(loaded)
        except QuestsError as exc:
            if exc.index is not None:  # about a structure of this file: name the file
                exc = locate_error(exc, source=path)
            if not skip_bad:
                raise exc from None
            batch.skipped.append((path, str(exc)))
            continue
        loaded.seconds = time.perf_counter() - start
        batch.items.append(loaded)
    if not batch.items:
        raise QuestsError(f"no usable {role} files ({len(batch.skipped)} skipped)")
    return batch


def _descriptor_file(path: str, settings: Settings) -> np.ndarray:
    """Saved descriptors, refused (one line) unless their layout is the settings'."""
    from quests_core.descriptor_files import load_descriptors

    return load_descriptors(path, k=settings.k, cutoff=settings.cutoff,
                            species=settings.species)


def read_files(specs: Sequence[Any], *, progress: Callable[[int, int], None] | None = None,
               cancel: Any = None) -> list[Loaded]:
    """Read the files with their structures in memory (no descriptors yet).

    Each file's frame selection, type map, topology, MD step length and label
    are honoured; ``progress(files_done, files)`` is called before each file.

    Raises
    ------
    QuestsError
        When a file cannot be read or its selection holds no structure
        (``"<name>: no structures in the selected frames"``).
    """
    from quests_core.dataset import Dataset

    out = []
    for i, spec in enumerate(map(_request, specs)):
        if progress is not None:
            progress(i, len(specs))
        _check(cancel)
        top = getattr(spec, "topology", None) or None
        name = getattr(spec, "name", "") or Path(spec.path).name
        ds = Dataset.from_files(
            spec.path, index=getattr(spec, "index", ":") or ":",
            format=getattr(spec, "format", None),
            type_map=getattr(spec, "type_map", None) or None, name=name,
            timestep_fs=getattr(spec, "timestep_fs", None),
            time_step=getattr(spec, "time_step", None), topology=top,
            topology_format=(getattr(spec, "topology_format", None) or None) if top else None,
        )
        if len(ds) == 0:
            raise QuestsError(f"{name}: no structures in the selected frames")
        if getattr(spec, "label", ""):
            ds.frames["label"] = spec.label
        out.append(Loaded(spec, ds))
    if progress is not None:
        progress(len(specs), len(specs))
    return out


def compute_descriptors(dataset: Any, settings: Settings, *, cache: Any = None,
                        progress: Callable[[int, int], None] | None = None,
                        cancel: Any = None, n_threads: int | None = None) -> np.ndarray:
    """Descriptors of a dataset, chunk by chunk through the cache (the key of the file it
    was read from: a hit for what :func:`load_files` computed, and the other way round).

    ``progress(done_atoms, total_atoms)`` is called after every structure and chunk;
    ``cancel`` is checked there. ``n_threads`` overrides ``settings.threads``.
    """
    from quests_core.pipeline import dataset_descriptors

    if n_threads is not None:
        settings = settings.replace(threads=n_threads)
    n = max(dataset.n_atoms, 1)
    counted = [0]

    def by_structure(structures):
        base, ends = counted[0], np.cumsum([len(a) for a in structures])

        def step(done: int, total: int) -> None:
            _check(cancel)
            if progress is not None:
                progress(int(base + ends[done - 1]), n)

        return step

    engine = _descriptor_function(settings, cancel, by_structure)

    def compute(structures, k, cutoff, species=None):
        x = engine(structures, k=k, cutoff=cutoff, species=species)
        counted[0] += len(x)
        if progress is not None:
            progress(counted[0], n)
        return x

    return np.asarray(dataset_descriptors(dataset, settings.k, settings.cutoff,
                                          settings.species, compute=compute, cache=cache,
                                          chunk_atoms=settings.chunk_atoms))


# ----------------------------------------------------------------------------
# The reference and its bandwidth
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ReferenceSet:
    """What dH is measured against, and h.

    Attributes
    ----------
    x : (m, d) array or None
        The reference files' descriptors (in order); None without reference files:
        each file is then compared with its own first frame (:meth:`of`).
    h : float
        The bandwidth (the policy of this module's docstring).
    items : tuple of Loaded
        The reference files (empty without them).
    """

    x: np.ndarray | None
    h: float
    items: tuple[Loaded, ...] = ()

    @property
    def self_reference(self) -> bool:
        """True when each file is compared with its own first frame."""
        return self.x is None

    def of(self, item: Loaded) -> np.ndarray:
        """The reference descriptors of ``item``: the reference files', or its first frame's."""
        if self.x is not None:
            return self.x
        first = int(item.dataset.frames["n_atoms"].iat[0])
        return np.asarray(item.x)[:first]


def first_frames(items: Sequence[Loaded]) -> pd.DataFrame:
    """The first frame of each file's per-frame table (the self-reference)."""
    return pd.concat([it.dataset.frames.iloc[:1] for it in items], ignore_index=True)


def reference_bandwidth(items: Sequence[Loaded], settings: Settings, *,
                        self_reference: bool = False, source: str | None = None,
                        needs: str = "the volume rule",
                        remedy: str = "give a fixed bandwidth") -> float:
    """h against the reference files ``items`` (or, with ``self_reference``, against the
    first frame of each of ``items``): the fixed value, or the volume rule of those frames.

    Raises
    ------
    QuestsError
        The volume rule without any periodic cell (``source: the volume rule needs
        periodic cells``), or of a reference given as descriptors (``needs`` and
        ``remedy`` word it).
    """
    if settings.bandwidth_rule == "fixed":
        return settings.bandwidth
    if any(it.dataset is None for it in items):
        raise QuestsError(f"{needs} needs the reference structures: descriptor files hold no "
                          f"cell volumes ({remedy})")
    if not items:
        raise QuestsError("the volume rule needs the reference's frames")
    frames = (first_frames(items) if self_reference else
              pd.concat([it.dataset.frames for it in items], ignore_index=True))
    if source is None:
        source = ", ".join(it.name for it in items)
    return frames_bandwidth(frames, source=source)


def reference(loaded: Sequence[Loaded], settings: Settings, *,
              roles: Sequence[str] = REFERENCE_ROLES, **words: Any) -> ReferenceSet:
    """The reference set of ``loaded`` (the files whose role is in ``roles``) and h.

    Without such a file every file is compared with its own first frame, and h is
    the volume rule of those first frames (the policy of this module's docstring).
    ``words`` (``source``, ``needs``, ``remedy``) word the errors of
    :func:`reference_bandwidth`.
    """
    refs = [it for it in loaded if it.role in roles]
    if not refs:
        return ReferenceSet(None, reference_bandwidth(loaded, settings, self_reference=True,
                                                      **words))
    h = reference_bandwidth(refs, settings, **words)
    x = (np.asarray(refs[0].x) if len(refs) == 1
         else np.concatenate([np.asarray(it.x) for it in refs]))
    return ReferenceSet(x, h, tuple(refs))


def overlap_bandwidths(frames: Mapping[str, pd.DataFrame], settings: Settings
                       ) -> tuple[float | dict[str, float], str]:
    """h of every column (reference) group of an overlap matrix, and a note ("" if none).

    ``frames``: each group's per-frame table (``volume_per_atom``, ``n_atoms``).
    Fixed bandwidth: that h. Volume rule: each group's own h(V); when a group has no
    periodic cell, one h for every column, the volume rule of all groups' frames
    pooled, and the note says so.

    Raises
    ------
    QuestsError
        The volume rule when no group has a periodic cell.
    """
    if settings.bandwidth_rule == "fixed":
        return settings.bandwidth, ""
    try:
        return {name: frames_bandwidth(table, source=name)
                for name, table in frames.items()}, ""
    except QuestsError as exc:
        pooled = frames_bandwidth(pd.concat(list(frames.values()), ignore_index=True),
                                  source=", ".join(frames))
        return pooled, (f"{exc}; every column uses h = {pooled:.4g} 1/Å, the volume rule of "
                        "all groups' frames with a cell")
