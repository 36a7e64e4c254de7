"""The loading service of the command line: :mod:`quests_core.loading` with argparse and tqdm.

Holds :func:`load_files` (the core's :func:`quests_core.loading.load_files`
with the input options of ``args``, a progress bar per file, ``--skip-bad``,
the input notes as warnings; with ``descriptor_files=True`` a ``.npz``/``.npy``
file is read as saved descriptors), :func:`reference_set` (the core's one
bandwidth policy, its errors in the CLI's words), the records of the core
(:class:`Loaded` per file, :class:`Batch` per call), the two views the
commands take of a batch: :func:`combined` (one dataset and one descriptor
array) and :func:`groups` (one set per file or per value of a per-frame
column), and :func:`load_reference` (the ``--reference`` files).

Invariants
----------
- An error about a structure names its file and frame
  (:func:`quests_core.io.locate_error`); without ``--skip-bad`` the first bad
  file stops the batch, with it the file is listed in ``Batch.skipped``.
- A batch has at least one file, else :class:`QuestsError` ("no usable ...").
- A descriptor file whose layout (k, cutoff, species, width, block order)
  differs from the command's settings is refused with one line naming it; its
  :class:`Loaded` record has no dataset and no cache key.
- ``--topology`` (and ``--topology-format``) is passed to the reader of every
  file (it names the atoms of MD trajectories; ignored by the other formats).
- Memory: the descriptors of every file of the batch (a file is streamed in
  blocks of ``--chunk-atoms`` atoms while it is computed).
"""

from __future__ import annotations

import argparse
import contextlib
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quests_core.errors import QuestsError
from quests_core.loading import Batch, FileRequest, Loaded, ReferenceSet
from quests_core.settings import Settings

from .parser import settings_from_args
from .progress import progress_bar

__all__ = ["Batch", "Loaded", "atom_mask", "combined", "descriptor_cache", "groups",
           "load_files", "load_one", "load_reference", "per_structure", "reference_set",
           "source_column"]


def descriptor_cache(args: argparse.Namespace):
    """The cache of ``--cache-dir`` (None with ``--no-cache``)."""
    if getattr(args, "no_cache", False):
        return None
    from quests_core.cache import DescriptorCache

    return DescriptorCache(args.cache_dir)


def requests(paths: Sequence[str], args: argparse.Namespace, index: str | None = None,
             role: str = "input") -> list[FileRequest]:
    """The :class:`quests_core.loading.FileRequest` of each path with the input options."""
    return [
        FileRequest(
            str(path), index=args.index if index is None else index, format=args.format,
            type_map=args.type_map, topology=getattr(args, "topology", None),
            topology_format=getattr(args, "topology_format", None), time_step=args.time_step,
            timestep_fs=getattr(args, "lammps_timestep_fs", None), role=role,
        )
        for path in paths
    ]


def load_files(
    paths: Sequence[str],
    args: argparse.Namespace,
    role: str = "input",
    index: str | None = None,
    settings: Settings | None = None,
    descriptor_files: bool = False,
) -> Batch:
    """Descriptors of every file (streamed, cached), honouring ``--skip-bad``:
    :func:`quests_core.loading.load_files` with a progress bar per file and the input
    notes (type map, times from MD steps) as warnings.

    Parameters
    ----------
    paths : list of str
        The files.
    args : argparse.Namespace
        Parsed common options (input, cache and progress options).
    role : str
        What the files are (``"reference"`` puts them in the reference set), for the
        "no usable files" error.
    index : str, optional
        Overrides ``--index`` (used for reference files).
    settings : Settings, optional
        The command's settings (default: :func:`settings_from_args` of ``args``).
    descriptor_files : bool
        Read files ending in ``.npz``/``.npy`` as saved descriptors (checked
        against the settings' k, cutoff and species), not as structures.

    Raises
    ------
    QuestsError
        For the first bad file without ``--skip-bad``, or when no file is usable.
    """
    from quests_core import loading

    settings = settings_from_args(args) if settings is None else settings

    @contextlib.contextmanager
    def file_progress(path: str):
        bar = progress_bar(args, desc=f"{Path(path).name}", unit=" atoms", unit_scale=True)

        def progress(frames: int, atoms: int) -> None:
            bar.set_postfix_str(f"{frames} frames", refresh=False)
            bar.update(atoms - bar.n)

        try:
            yield progress
        finally:
            bar.close()

    def notes(item: Loaded) -> None:
        """The input notes, in the words the dashboard uses."""
        from quests_core.notes import InputWarning, step_time_note, type_map_note

        if item.dataset is None:
            return
        found = [type_map_note(item.path, args.type_map, "with --type-map.")]
        if item.time_from_steps:
            found.append(step_time_note(item.path, args.lammps_timestep_fs,
                                        "give --lammps-timestep-fs if the run used "
                                        "another step length"))
        for note in filter(None, found):
            warnings.warn(InputWarning(note), stacklevel=4)

    return loading.load_files(
        requests(paths, args, index, role), settings, cache=descriptor_cache(args),
        skip_bad=args.skip_bad, role=role, descriptor_files=descriptor_files,
        file_progress=file_progress, on_loaded=notes,
    )


def load_one(
    path: str,
    args: argparse.Namespace,
    settings: Settings,
    role: str = "input",
    index: str | None = None,
) -> tuple[Batch, Any, np.ndarray]:
    """One file through :func:`load_files`: the batch, its dataset and its descriptors."""
    batch = load_files([path], args, role=role, index=index, settings=settings)
    return batch, batch.items[0].dataset, np.asarray(batch.items[0].x)


def reference_set(items: Sequence[Loaded], settings: Settings) -> ReferenceSet:
    """:func:`quests_core.loading.reference` of loaded files, its errors in the CLI's words
    (``NAME: --bandwidth auto: the volume rule needs periodic cells ...``): the
    ``--reference`` files (role ``"reference"``), else the first frame of each file."""
    from quests_core import loading

    refs = [it for it in items if it.role == "reference"] or list(items)
    names = [it.dataset.name for it in refs if it.dataset is not None]
    return loading.reference(items, settings, source=f"{'+'.join(names)}: --bandwidth auto",
                             needs="--bandwidth auto", remedy="give --bandwidth H")


def combined(items: Sequence[Loaded]) -> tuple[Any, np.ndarray]:
    """One dataset and one descriptor array of the loaded files, in order."""
    from quests_core.dataset import concat

    if len(items) == 1:
        return items[0].dataset, np.asarray(items[0].x)
    return concat([it.dataset for it in items]), np.concatenate([it.x for it in items])


def groups(batch: Batch, by: str | None) -> list[tuple[str, Any, np.ndarray]]:
    """``(name, dataset, descriptors)`` per file, or per value of the column ``by``.

    Files are named by their base name, or by their path when two base names clash;
    names are unique (a name given twice gets `` (2)``, ...).
    """
    if by is None:
        names = [Path(it.path).name for it in batch.items]
        if len(set(names)) < len(names):
            names = [it.path for it in batch.items]
        sets = [(it.dataset, np.asarray(it.x)) for it in batch.items]
    else:
        dataset, x = combined(batch.items)
        if by not in dataset.frames:
            raise QuestsError(
                f"no per-frame column {by!r} (have {', '.join(dataset.frames.columns)})"
            )
        per_atom = dataset.frames[by].to_numpy()[dataset.atom_structure_index()]
        names, sets = [], []
        for value, part in dataset.split_by(by).items():
            mask = per_atom == value if not pd.isna(value) else pd.isna(per_atom)
            names.append(str(value))
            sets.append((part, x[mask]))
    return [(name, ds, x) for name, (ds, x) in zip(_unique(names), sets, strict=True)]


def _unique(names: Sequence[str]) -> list[str]:
    """``names`` with repeats renamed ``name (2)``, ``name (3)``, ..."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return out


def per_structure(dataset: Any, x: np.ndarray) -> list[np.ndarray]:
    """The descriptor rows of each structure of ``dataset`` (views of ``x``)."""
    counts = dataset.frames["n_atoms"].to_numpy(np.int64)
    return np.split(np.asarray(x), np.cumsum(counts)[:-1])


def atom_mask(dataset: Any, rows: np.ndarray) -> np.ndarray:
    """Per-atom mask of the structures ``rows`` (boolean, one per structure) of ``dataset``."""
    return np.asarray(rows, dtype=bool)[dataset.atom_structure_index()]


def source_column(dataset: Any) -> np.ndarray:
    """The source file of every atom of ``dataset``."""
    return dataset.frames["source"].to_numpy()[dataset.atom_structure_index()]


def load_reference(
    args: argparse.Namespace, settings: Settings
) -> tuple[Batch, Any, np.ndarray]:
    """The ``--reference`` files (frames ``--reference-index``): batch, dataset, descriptors.

    A reference file ending in ``.npz``/``.npy`` is read as saved descriptors
    (:func:`quests_core.descriptor_files.load_descriptors`); the dataset is then
    None (no structures: only a fixed bandwidth applies).
    """
    batch = load_files(
        args.reference, args, role="reference", index=args.reference_index, settings=settings,
        descriptor_files=True,
    )
    if any(it.dataset is None for it in batch.items):
        x = np.concatenate([np.asarray(it.x) for it in batch.items])
        return batch, None, x
    dataset, x = combined(batch.items)
    return batch, dataset, x
