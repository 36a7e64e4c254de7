"""The data model shared by the CLI and the dashboard.

A :class:`Dataset` is a named collection of structures with

* ``frames``: a pandas DataFrame with one row per structure and the per-frame
  columns of ``docs/architecture.md`` (``structure``, ``source``, ``frame``,
  ``time``, ``label``, ``generation``, ``n_atoms``, ``atom_offset``,
  ``volume_per_atom``, ``temperature``; plus ``energy`` and ``elements``);
* ``arrays``: per-atom arrays aligned with the concatenated atoms of all
  structures (forces from one or more sources, computed ``dH``, ``cluster``
  ids, ...);
* the structures themselves, either held in memory or streamed again from
  their files on demand (``lazy=True``), so a multi-gigabyte trajectory never
  has to fit in memory.

Datasets combine with :func:`concat` and split by any per-frame column with
:meth:`Dataset.split_by` / :meth:`Dataset.select`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ase import Atoms
from ase.data import chemical_symbols

from quests_core.cache_keys import structures_digest
from quests_core.errors import QuestsError
from quests_core.io import iter_frames, parse_index, parse_type_map
from quests_core.io_common import noting
from quests_core.io_mdanalysis import TopologyWarning, topology_path

__all__ = [
    "ATOM_COLUMNS",
    "FRAME_COLUMNS",
    "Dataset",
    "FileOrigin",
    "FileSpec",
    "concat",
    "file_paths",
    "frame_record",
    "per_atom_arrays",
]

#: Per-frame columns, in order (docs/architecture.md), plus ``energy`` and ``elements``.
FRAME_COLUMNS: tuple[str, ...] = (
    "structure",
    "source",
    "frame",
    "time",
    "label",
    "generation",
    "n_atoms",
    "atom_offset",
    "volume_per_atom",
    "temperature",
    "energy",
    "elements",
)
#: Columns of :func:`frame_record` (the per-frame columns the dataset does not compute).
RECORD_COLUMNS: tuple[str, ...] = tuple(
    c for c in FRAME_COLUMNS if c not in ("structure", "atom_offset")
)
#: Per-atom columns before the per-atom arrays (docs/architecture.md).
ATOM_COLUMNS: tuple[str, ...] = (
    "structure",
    "frame",
    "time",
    "label",
    "generation",
    "atom",
    "species",
    "x",
    "y",
    "z",
)
_FRAME_DTYPES = {
    "structure": "int64",
    "source": "object",
    "frame": "int64",
    "time": "float64",
    "label": "object",
    "generation": "int64",
    "n_atoms": "int64",
    "atom_offset": "int64",
    "volume_per_atom": "float64",
    "temperature": "float64",
    "energy": "float64",
    "elements": "object",
}
#: info keys read for each per-frame column, first match wins.
LABEL_KEYS = ("label", "subset", "config_type")
GENERATION_KEYS = ("generation", "gen")
TIME_KEYS = ("time",)
TEMPERATURE_KEYS = ("temperature", "T", "temp")
ENERGY_KEYS = ("energy", "free_energy")
#: per-atom arrays picked up from files: every name starting with a prefix, and these names.
ARRAY_PREFIXES = ("forces",)
ARRAY_NAMES = ("dH", "cluster", "force_error")


@dataclass(frozen=True)
class FileSpec:
    """How to read a file again: path, frame selection, format, LAMMPS type map and topology.

    ``topology`` is the topology file that names the atoms of an MD trajectory
    (:mod:`quests_core.io_mdanalysis`); :meth:`Dataset.from_files` records the
    one it used (given, or found next to the trajectory), None for the formats
    that need none. It is part of the cache key of the read, and so is
    ``topology_format`` (its MDAnalysis format, when named: an Amber ``.top``).
    ``type_map`` holds LAMMPS types or atom names (``(("MW", "O"),)``).
    """

    path: str
    index: str = ":"
    format: str | None = None
    type_map: tuple[tuple[int, str], ...] = ()
    topology: str | None = None
    topology_format: str | None = None

    def type_map_dict(self) -> dict[int, str] | None:
        """The type map as a dict, or None when empty."""
        return dict(self.type_map) or None


@dataclass(frozen=True)
class FileOrigin:
    """What a dataset read from one file was when it was read (see :meth:`Dataset.file_source`).

    Attributes
    ----------
    spec : FileSpec
        The file and how it was read.
    frames : tuple of int
        The frame numbers read, in order.
    structures : str or None
        :func:`~quests_core.cache_keys.structures_digest` of the structures when
        they were kept in memory (None for a lazy read: its structures are read
        from the file each time).
    stat : tuple or None
        ``(size, mtime_ns, inode)`` of the file before it was read: a file
        changed since is no longer the source of structures kept in memory.
    """

    spec: FileSpec
    frames: tuple[int, ...]
    structures: str | None = None
    stat: tuple[int, int, int] | None = None


def _file_stat(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns, st.st_ino)


# ----------------------------------------------------------------------------
# Per-frame records and per-atom arrays of one structure
# ----------------------------------------------------------------------------


def _info_value(atoms: Atoms, keys: Sequence[str]) -> Any:
    for key in keys:
        if key in atoms.info:
            return atoms.info[key]
    return None


def _as_float(value: Any) -> float:
    try:
        out = float(np.asarray(value).reshape(-1)[0]) if value is not None else np.nan
    except (TypeError, ValueError, IndexError):
        return np.nan
    return out


def _as_int(value: Any, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def _temperature(atoms: Atoms) -> float:
    value = _info_value(atoms, TEMPERATURE_KEYS)
    if value is not None:
        return _as_float(value)
    if "momenta" in atoms.arrays and np.any(atoms.arrays["momenta"]):
        return float(atoms.get_temperature())
    return np.nan


def _energy(atoms: Atoms) -> float:
    value = _info_value(atoms, ENERGY_KEYS)
    if value is not None:
        return _as_float(value)
    calc = atoms.calc
    results = getattr(calc, "results", None) or {}
    if "energy" in results:
        return _as_float(results["energy"])
    return np.nan


def _volume_per_atom(atoms: Atoms) -> float:
    cell = np.asarray(atoms.cell[:], dtype=float)
    if cell.shape != (3, 3) or not np.isfinite(cell).all():
        return np.nan
    volume = abs(float(np.linalg.det(cell)))
    if volume <= 1e-12 or len(atoms) == 0:
        return np.nan
    return volume / len(atoms)


def _elements(numbers: np.ndarray) -> str:
    return ",".join(chemical_symbols[int(z)] for z in np.unique(np.asarray(numbers)))


def file_paths(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """One path or a sequence of paths as a non-empty list of ``str``.

    Raises
    ------
    QuestsError
        For no path.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out = [str(p) for p in paths]
    if not out:
        raise QuestsError("no input files")
    return out


def frame_record(
    atoms: Atoms,
    source: str = "",
    frame: int = 0,
    *,
    label: str | None = None,
    time_step: float | None = None,
    timestep_fs: float | None = None,
) -> dict[str, Any]:
    """The per-frame row of one structure (without ``structure``/``atom_offset``).

    Parameters
    ----------
    atoms : ase.Atoms
    source : str
        File name.
    frame : int
        Index of the frame in its file.
    label : str, optional
        Label used when ``atoms.info`` has none (keys ``label``, ``subset``,
        ``config_type``).
    time_step : float, optional
        Time between frames in ps; ``time = frame * time_step`` when
        ``atoms.info`` has no ``time`` (in ps).
    timestep_fs : float, optional
        Length of one MD step in fs, for files that record the step number
        (LAMMPS dumps: ``ITEM: TIMESTEP``, read by ASE into
        ``atoms.info["timestep"]``): ``time = timestep * timestep_fs / 1000``
        ps when ``atoms.info`` has no ``time``. Takes precedence over
        ``time_step``.

    Returns
    -------
    dict
    """
    own_label = _info_value(atoms, LABEL_KEYS)
    time = _as_float(_info_value(atoms, TIME_KEYS))
    if np.isnan(time) and timestep_fs is not None:
        time = _as_float(atoms.info.get("timestep")) * float(timestep_fs) / 1000.0
    if np.isnan(time) and time_step is not None:
        time = float(frame) * float(time_step)
    return {
        "source": str(source),
        "frame": int(frame),
        "time": time,
        "label": str(own_label) if own_label is not None else (label or ""),
        "generation": _as_int(_info_value(atoms, GENERATION_KEYS), -1),
        "n_atoms": len(atoms),
        "volume_per_atom": _volume_per_atom(atoms),
        "temperature": _temperature(atoms),
        "energy": _energy(atoms),
        "elements": _elements(atoms.numbers),
    }


def _wanted_array(name: str, names: Sequence[str] | None) -> bool:
    if names is not None:
        return name in names
    return name.startswith(ARRAY_PREFIXES) or name in ARRAY_NAMES


def per_atom_arrays(atoms: Atoms, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Per-atom arrays of one structure worth keeping in a :class:`Dataset`.

    Parameters
    ----------
    atoms : ase.Atoms
    names : sequence of str, optional
        Keep exactly these names; by default every ``forces*`` array plus
        ``dH``, ``cluster`` and ``force_error``. Forces held by a calculator
        (extxyz ``forces`` column) appear as ``forces``.
    """
    out: dict[str, np.ndarray] = {}
    n = len(atoms)
    for name, values in atoms.arrays.items():
        if name in ("positions", "numbers") or not _wanted_array(name, names):
            continue
        values = np.asarray(values)
        if values.shape[:1] == (n,) and values.dtype.kind in "biuf":
            out[name] = values.copy()
    results = getattr(atoms.calc, "results", None) or {}
    if "forces" in results and "forces" not in out and _wanted_array("forces", names):
        forces = np.asarray(results["forces"], dtype=float)
        if forces.shape == (n, 3):
            out["forces"] = forces.copy()
    return out


def _fill_value(dtype: np.dtype) -> Any:
    if dtype.kind == "f":
        return np.nan
    if dtype.kind in "iu":
        return -1
    if dtype.kind == "b":
        return False
    raise QuestsError(f"cannot fill missing values of a {dtype} per-atom array")


def _stack_arrays(
    parts: Sequence[Mapping[str, np.ndarray]], counts: Sequence[int]
) -> dict[str, np.ndarray]:
    """Concatenate per-structure array dicts; structures lacking an array are filled."""
    names: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    for part in parts:
        for name, values in part.items():
            shape, dtype = values.shape[1:], values.dtype
            if name in names:
                old_shape, old_dtype = names[name]
                if old_shape != shape:
                    raise QuestsError(
                        f"per-atom array {name!r} has shape {shape} in one structure "
                        f"and {old_shape} in another"
                    )
                dtype = np.promote_types(old_dtype, dtype)
            names[name] = (shape, dtype)
    out: dict[str, np.ndarray] = {}
    for name, (shape, dtype) in names.items():
        if any(name not in part for part in parts):
            if dtype.kind in "iub" and dtype.kind != "f":
                fill = _fill_value(dtype)
            else:
                dtype = np.promote_types(dtype, np.float64)
                fill = np.nan
        else:
            fill = None
        chunks = []
        for part, n in zip(parts, counts, strict=True):
            if name in part:
                chunks.append(np.asarray(part[name], dtype=dtype))
            else:
                chunks.append(np.full((n, *shape), fill, dtype=dtype))
        out[name] = np.concatenate(chunks) if chunks else np.empty((0, *shape), dtype)
    return out


# ----------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------


def _normalise_frames(frames: pd.DataFrame) -> pd.DataFrame:
    frames = frames.reset_index(drop=True).copy()
    defaults = {
        "source": "",
        "frame": 0,
        "time": np.nan,
        "label": "",
        "generation": -1,
        "volume_per_atom": np.nan,
        "temperature": np.nan,
        "energy": np.nan,
        "elements": "",
    }
    if "n_atoms" not in frames:
        raise QuestsError("per-frame table without an 'n_atoms' column")
    for column, value in defaults.items():
        if column not in frames:
            frames[column] = value
    n_atoms = frames["n_atoms"].to_numpy(dtype=np.int64)
    frames["structure"] = np.arange(len(frames), dtype=np.int64)
    frames["atom_offset"] = np.concatenate([[0], np.cumsum(n_atoms)[:-1]]).astype(np.int64)[
        : len(frames)
    ]
    for column, dtype in _FRAME_DTYPES.items():
        frames[column] = frames[column].astype(dtype)
    frames["label"] = frames["label"].fillna("").astype(str)
    ordered = list(FRAME_COLUMNS) + [c for c in frames.columns if c not in FRAME_COLUMNS]
    return frames[ordered]


class Dataset:
    """A named collection of structures with per-frame and per-atom tables.

    Build one with :meth:`from_files` or :meth:`from_structures`; do not call
    the constructor with private arguments yourself.

    Parameters
    ----------
    name : str
        Display name.
    frames : pandas.DataFrame
        One row per structure; must have ``n_atoms``. ``structure`` and
        ``atom_offset`` are recomputed, missing columns get their defaults.
    arrays : dict of str to numpy.ndarray, optional
        Per-atom arrays, each with ``n_atoms`` rows in total.
    structures : sequence of ase.Atoms or None, optional
        The structures in memory (``None`` entries are streamed from ``specs``).
    specs : sequence of FileSpec, optional
        Files that lazy structures are read from.
    spec_index : array of int, optional
        For each structure, the position of its file in ``specs`` (-1: in memory).
    """

    def __init__(
        self,
        name: str,
        frames: pd.DataFrame,
        arrays: Mapping[str, np.ndarray] | None = None,
        structures: Sequence[Atoms | None] | None = None,
        specs: Sequence[FileSpec] = (),
        spec_index: Sequence[int] | np.ndarray | None = None,
    ):
        self.name = str(name)
        self.frames = _normalise_frames(frames)
        n = len(self.frames)
        self._atoms: list[Atoms | None] = list(structures) if structures is not None else [None] * n
        if len(self._atoms) != n:
            raise QuestsError(
                f"dataset {self.name!r}: {len(self._atoms)} structures for {n} table rows"
            )
        self._specs: tuple[FileSpec, ...] = tuple(specs)
        if spec_index is None:
            spec_index = np.full(n, -1, dtype=np.int64)
        self._spec_index = np.asarray(spec_index, dtype=np.int64).reshape(-1)
        if len(self._spec_index) != n:
            raise QuestsError(f"dataset {self.name!r}: spec_index has the wrong length")
        for i, (atoms, spec) in enumerate(zip(self._atoms, self._spec_index, strict=True)):
            if atoms is None and not 0 <= spec < len(self._specs):
                raise QuestsError(f"dataset {self.name!r}: structure {i} has no source")
        self.arrays: dict[str, np.ndarray] = {}
        for key, values in (arrays or {}).items():
            self.set_array(key, values)
        #: ``(file, frame, reason)`` of truncated last frames skipped while reading
        #: (see :class:`quests_core.io.TruncatedFrameWarning`)
        self.skipped_frames: list[tuple[str, int, str]] = []
        #: what reading an MD trajectory's topology warned about (virtual sites left out,
        #: elements taken from masses), one line each (see ``TopologyWarning``)
        self.topology_notes: list[str] = []
        #: the read of one file this dataset is, if it is one (see :meth:`file_source`)
        self.origin: FileOrigin | None = None

    # ------------------------------------------------------------------ build

    @classmethod
    def from_structures(
        cls,
        structures: Atoms | Iterable[Atoms],
        name: str = "dataset",
        *,
        source: str = "",
        label: str | None = None,
        time_step: float | None = None,
        arrays: Sequence[str] | None = None,
        validate: bool = True,
    ) -> Dataset:
        """Dataset of structures held in memory.

        Parameters
        ----------
        structures : ase.Atoms or iterable of ase.Atoms
        name : str
        source : str
            Value of the ``source`` column.
        label : str, optional
            Label of structures whose ``info`` has none.
        time_step : float, optional
            ps between frames, used when ``info`` has no ``time``.
        arrays : sequence of str, optional
            Per-atom arrays to keep (default: forces*, dH, cluster, force_error).
        validate : bool
            Check every structure (zero atoms, NaN positions, degenerate cell).
        """
        from quests_core.io import frame_origin, validate_atoms
        from quests_core.io_errors import remember_origin

        if isinstance(structures, Atoms):
            structures = [structures]
        atoms_list = list(structures)
        records, parts = [], []
        for i, atoms in enumerate(atoms_list):
            if validate:
                validate_atoms(atoms, source or name, i)
            if source and frame_origin(atoms) is None:
                remember_origin(atoms, source, i)
            records.append(frame_record(atoms, source, i, label=label, time_step=time_step))
            parts.append(per_atom_arrays(atoms, arrays))
        frames = pd.DataFrame.from_records(records, columns=list(RECORD_COLUMNS))
        stacked = _stack_arrays(parts, [len(a) for a in atoms_list])
        return cls(name, frames, stacked, structures=atoms_list)

    @classmethod
    def from_files(
        cls,
        paths: str | os.PathLike | Sequence[str | os.PathLike],
        index: int | slice | str | None = ":",
        format: str | None = None,
        type_map: Mapping[int, str] | Sequence[str] | str | None = None,
        *,
        name: str | None = None,
        label: str | None = None,
        lazy: bool = False,
        time_step: float | None = None,
        timestep_fs: float | None = None,
        arrays: Sequence[str] | None | str = "auto",
        progress: Callable[[int], None] | None = None,
        topology: str | os.PathLike | None = None,
        topology_format: str | None = None,
    ) -> Dataset:
        """Read one or more files into a dataset.

        Parameters
        ----------
        paths : path or sequence of paths
        index : int, slice or str
            Frame selection applied to every file (``"start:stop:step"``).
        format : str, optional
            ASE format name (detected by default).
        type_map : optional
            LAMMPS type -> element, see :func:`quests_core.io.parse_type_map`.
        name : str, optional
            Dataset name (default: the file stems joined by ``+``).
        label : str, optional
            Label of structures whose ``info`` has none.
        lazy : bool
            Do not keep the structures: one streaming pass builds the tables,
            and :meth:`iter_structures` reads the files again when needed.
        time_step : float, optional
            ps between frames, used when ``info`` has no ``time``.
        timestep_fs : float, optional
            fs per MD step for files that record the step number (LAMMPS
            dumps): ``time = timestep * timestep_fs / 1000`` ps, see
            :func:`frame_record`.
        arrays : "auto", None or sequence of str
            Per-atom arrays to keep. ``"auto"``: forces*, dH, cluster and
            force_error when not lazy, none when lazy.
        progress : callable, optional
            Called with the number of frames read so far after each frame.
        topology : path-like, optional
            The topology file naming the atoms of MD trajectories (XTC, TRR,
            DCD, Amber NetCDF; see :func:`quests_core.io.iter_frames`);
            default: a file with the trajectory's stem next to it. The one
            used is recorded in the file's :class:`FileSpec`.
        topology_format : str, optional
            MDAnalysis format of ``topology`` (``PRMTOP``, ``TOP``, ``PSF``, ...)
            when its extension does not say it; recorded in the :class:`FileSpec`.

        Raises
        ------
        QuestsError
            Naming file and frame for unreadable or invalid input.
        """
        paths = file_paths(paths)
        if arrays == "auto":
            keep_arrays: Sequence[str] | None | bool = False if lazy else None
        else:
            keep_arrays = arrays if arrays is not None else None
        tmap = parse_type_map(type_map)
        index_text = _index_to_text(index)
        specs, records, parts, counts, atoms_kept, spec_index = [], [], [], [], [], []
        skipped: list[tuple[str, int, str]] = []
        n_read = 0
        stat = _file_stat(paths[0])
        topology_notes: list[str] = []
        with noting(TopologyWarning, topology_notes):
            for path in paths:
                used = topology_path(path, format, topology)
                top_fmt = topology_format if used is not None else None
                spec = FileSpec(path, index_text, format, tuple(sorted(tmap.items())), used,
                                top_fmt)
                specs.append(spec)
                frames_of_file = iter_frames(
                    path, index=index, format=format, type_map=tmap or None, skipped=skipped,
                    topology=used, topology_format=top_fmt,
                )
                for item in frames_of_file:
                    records.append(
                        frame_record(item.atoms, path, item.frame, label=label, time_step=time_step,
                                     timestep_fs=timestep_fs)
                    )
                    counts.append(len(item.atoms))
                    if keep_arrays is not False:
                        parts.append(per_atom_arrays(item.atoms, keep_arrays))  # type: ignore[arg-type]
                    atoms_kept.append(None if lazy else item.atoms)
                    spec_index.append(len(specs) - 1)
                    n_read += 1
                    if progress is not None:
                        progress(n_read)
        frames = pd.DataFrame.from_records(records, columns=list(RECORD_COLUMNS))
        stacked = _stack_arrays(parts, counts) if parts else {}
        if name is None:
            name = "+".join(Path(p).stem for p in paths)
        out = cls(name, frames, stacked, structures=atoms_kept, specs=specs, spec_index=spec_index)
        out.skipped_frames = skipped
        out.topology_notes = topology_notes
        if len(specs) == 1:
            kept = None if lazy else structures_digest(atoms_kept)  # type: ignore[arg-type]
            out.origin = FileOrigin(specs[0], tuple(int(f) for f in frames["frame"]), kept, stat)
        return out

    @classmethod
    def from_frames_table(
        cls,
        frames: pd.DataFrame,
        spec: FileSpec,
        name: str | None = None,
    ) -> Dataset:
        """A lazy dataset of one file whose per-frame table is already known (cache).

        The ``source`` column is set to ``spec.path``.
        """
        frames = frames.copy()
        frames["source"] = spec.path
        out = cls(
            name if name is not None else Path(spec.path).stem,
            frames,
            specs=[spec],
            spec_index=np.zeros(len(frames), dtype=np.int64),
        )
        out.origin = FileOrigin(spec, tuple(int(f) for f in out.frames["frame"]))
        return out

    # ------------------------------------------------------------- properties

    def __len__(self) -> int:
        return len(self.frames)

    def __repr__(self) -> str:
        mode = "lazy" if self.is_lazy else "in memory"
        return (
            f"Dataset({self.name!r}, {len(self)} structures, {self.n_atoms} atoms, "
            f"arrays={sorted(self.arrays)}, {mode})"
        )

    @property
    def n_structures(self) -> int:
        """Number of structures."""
        return len(self.frames)

    @property
    def n_atoms(self) -> int:
        """Total number of atoms."""
        return int(self.frames["n_atoms"].sum())

    @property
    def is_lazy(self) -> bool:
        """True if some structures are streamed from files rather than held in memory."""
        return any(a is None for a in self._atoms)

    @property
    def specs(self) -> tuple[FileSpec, ...]:
        """The files this dataset reads lazy structures from."""
        return self._specs

    def file_source(self) -> FileSpec | None:
        """The file this dataset is an unmodified read of, else None.

        A dataset made by :meth:`from_files` of one file (or by
        :meth:`from_frames_table`, or :meth:`load` of one of those) is such a
        read while it still holds the same frames of that file, in order, and,
        for structures kept in memory, while their positions, cells, pbc and
        atomic numbers are unchanged (checked against a digest taken when they
        were read). Per-frame columns (labels, times) and per-atom arrays do
        not matter. The descriptor cache keys such a dataset by the file
        (:func:`quests_core.cache_keys.file_descriptor_key`), like the CLI does.
        """
        origin = self.origin
        if origin is None or len(self) != len(origin.frames):
            return None
        if self._specs[:1] != (origin.spec,) or np.any(self._spec_index != 0):
            return None
        if tuple(int(f) for f in self.frames["frame"]) != origin.frames:
            return None
        in_memory = [a is not None for a in self._atoms]
        if not any(in_memory):
            return origin.spec
        if not all(in_memory) or origin.structures is None:
            return None
        if origin.stat is None or _file_stat(origin.spec.path) != origin.stat:
            return None
        if structures_digest(self._atoms) != origin.structures:  # type: ignore[arg-type]
            return None
        return origin.spec

    @property
    def species(self) -> tuple[str, ...]:
        """Element symbols present, sorted by atomic number."""
        symbols = set()
        for text in self.frames["elements"]:
            symbols.update(s for s in str(text).split(",") if s)
        from ase.data import atomic_numbers

        return tuple(sorted(symbols, key=lambda s: atomic_numbers.get(s, 0)))

    @property
    def structures(self) -> list[Atoms]:
        """The structures as a list (lazy datasets are read from their files)."""
        if not self.is_lazy:
            return list(self._atoms)  # type: ignore[arg-type]
        return list(self.iter_structures())

    def atom_slice(self, structure: int) -> slice:
        """Rows of structure ``structure`` in the per-atom arrays."""
        row = self.frames.iloc[structure]
        start = int(row["atom_offset"])
        return slice(start, start + int(row["n_atoms"]))

    def atom_structure_index(self) -> np.ndarray:
        """For every atom, the position of its structure (``structure`` column)."""
        return np.repeat(
            np.arange(len(self), dtype=np.int64), self.frames["n_atoms"].to_numpy(np.int64)
        )

    # -------------------------------------------------------------- mutation

    def set_array(self, name: str, values: np.ndarray) -> None:
        """Add or replace a per-atom array (length must be :attr:`n_atoms`)."""
        values = np.asarray(values)
        if values.ndim == 0 or values.shape[0] != self.n_atoms:
            raise QuestsError(
                f"dataset {self.name!r}: per-atom array {name!r} has "
                f"{values.shape[0] if values.ndim else 0} rows, expected {self.n_atoms}"
            )
        self.arrays[str(name)] = values

    def set_column(self, name: str, values: Any) -> None:
        """Add or replace a per-frame column (``H``, ``mean_dH``, ...)."""
        if name in ("structure", "atom_offset", "n_atoms"):
            raise QuestsError(f"column {name!r} is computed by the dataset itself")
        values_arr = np.asarray(values)
        if values_arr.ndim and values_arr.shape[0] != len(self):
            raise QuestsError(
                f"dataset {self.name!r}: column {name!r} has {values_arr.shape[0]} values, "
                f"expected {len(self)}"
            )
        self.frames[name] = values

    # ------------------------------------------------------------- structures

    def iter_structures(self) -> Iterator[Atoms]:
        """Yield the structures in order, streaming lazy ones from their files."""
        n = len(self)
        row = 0
        while row < n:
            atoms = self._atoms[row]
            if atoms is not None:
                yield atoms
                row += 1
                continue
            spec_id = int(self._spec_index[row])
            end = row
            while end < n and self._atoms[end] is None and self._spec_index[end] == spec_id:
                end += 1
            yield from self._stream_rows(spec_id, row, end)
            row = end

    def _stream_rows(self, spec_id: int, start: int, end: int) -> Iterator[Atoms]:
        spec = self._specs[spec_id]
        wanted = self.frames["frame"].to_numpy()[start:end]
        increasing = bool(np.all(np.diff(wanted) > 0))
        if not increasing:  # arbitrary order: read each frame on its own
            for frame in wanted:
                yield next(self._iter_spec(spec, int(frame))).atoms
            return
        step = int(np.gcd.reduce(np.diff(wanted))) if len(wanted) > 1 else 1
        window = slice(int(wanted[0]), int(wanted[-1]) + 1, step)
        position = 0
        for item in self._iter_spec(spec, window):
            if position < len(wanted) and item.frame == wanted[position]:
                if len(item.atoms) != int(self.frames["n_atoms"].iat[start + position]):
                    raise QuestsError(
                        f"frame {item.frame}: file changed since it was loaded "
                        f"({len(item.atoms)} atoms, expected "
                        f"{int(self.frames['n_atoms'].iat[start + position])})",
                        source=spec.path,
                    )
                yield item.atoms
                position += 1
            if position == len(wanted):
                return
        if position < len(wanted):
            raise QuestsError(
                f"frame {int(wanted[position])}: no longer in the file (changed since loading?)",
                source=spec.path,
            )

    @staticmethod
    def _iter_spec(spec: FileSpec, index: int | slice):
        return iter_frames(
            spec.path, index=index, format=spec.format, type_map=spec.type_map_dict(),
            topology=spec.topology, topology_format=spec.topology_format,
        )

    def iter_chunks(self, max_atoms: int = 50_000) -> Iterator[tuple[int, list[Atoms]]]:
        """Yield ``(first structure, structures)`` chunks of at most ``max_atoms`` atoms.

        A structure larger than ``max_atoms`` forms a chunk on its own.
        """
        chunk: list[Atoms] = []
        first, n_chunk = 0, 0
        for i, atoms in enumerate(self.iter_structures()):
            if chunk and n_chunk + len(atoms) > max_atoms:
                yield first, chunk
                chunk, n_chunk, first = [], 0, i
            chunk.append(atoms)
            n_chunk += len(atoms)
        if chunk:
            yield first, chunk

    def structure(self, i: int) -> Atoms:
        """Structure ``i`` (read from its file if lazy)."""
        if not -len(self) <= i < len(self):
            raise QuestsError(f"dataset {self.name!r}: no structure {i} ({len(self)} in total)")
        i %= len(self)
        atoms = self._atoms[i]
        if atoms is not None:
            return atoms
        spec = self._specs[int(self._spec_index[i])]
        return next(self._iter_spec(spec, int(self.frames["frame"].iat[i]))).atoms

    def load(self) -> Dataset:
        """An in-memory copy of this dataset (lazy structures are read)."""
        source = self.file_source()
        structures = list(self.iter_structures())
        out = Dataset(
            self.name,
            self.frames,
            dict(self.arrays),
            structures=structures,
            specs=self._specs,
            spec_index=self._spec_index,
        )
        if source is not None and self.origin is not None:
            out.origin = FileOrigin(source, self.origin.frames, structures_digest(structures),
                                    _file_stat(source.path))
        return out

    # ----------------------------------------------------------------- tables

    def atoms_table(self, positions: bool = True) -> pd.DataFrame:
        """Per-atom table: ``structure, frame, time, label, generation, atom, species, x, y, z``
        and one column per per-atom array (``name_x/_y/_z`` for 3-vectors, ``name_i`` else).

        Parameters
        ----------
        positions : bool
            Include ``species`` and ``x, y, z`` (needs the structures; lazy
            datasets are streamed).
        """
        counts = self.frames["n_atoms"].to_numpy(np.int64)
        rows = self.atom_structure_index()
        table: dict[str, Any] = {}
        for column in ("structure", "frame", "time", "label", "generation"):
            table[column] = self.frames[column].to_numpy()[rows]
        offsets = self.frames["atom_offset"].to_numpy(np.int64)
        table["atom"] = np.arange(self.n_atoms, dtype=np.int64) - np.repeat(offsets, counts)
        if positions:
            species = np.empty(self.n_atoms, dtype=object)
            xyz = np.empty((self.n_atoms, 3), dtype=float)
            for i, atoms in enumerate(self.iter_structures()):
                sl = slice(offsets[i], offsets[i] + counts[i])
                species[sl] = np.asarray(chemical_symbols, dtype=object)[atoms.numbers]
                xyz[sl] = atoms.positions
            table["species"] = species
            table["x"], table["y"], table["z"] = xyz[:, 0], xyz[:, 1], xyz[:, 2]
        for name, values in self.arrays.items():
            table.update(_array_columns(name, values))
        return pd.DataFrame(table)

    # ----------------------------------------------------- subsets and splits

    def subset(self, rows: Sequence[int] | np.ndarray, name: str | None = None) -> Dataset:
        """Dataset of the structures at positions ``rows`` (ints or a boolean mask)."""
        rows = np.asarray(rows)
        if rows.dtype == bool:
            if rows.shape != (len(self),):
                raise QuestsError(f"dataset {self.name!r}: mask of the wrong length")
            rows = np.flatnonzero(rows)
        rows = rows.astype(np.int64).reshape(-1)
        if rows.size and (rows.min() < -len(self) or rows.max() >= len(self)):
            raise QuestsError(f"dataset {self.name!r}: structure index out of range")
        rows %= max(len(self), 1)
        counts = self.frames["n_atoms"].to_numpy(np.int64)[rows]
        starts = self.frames["atom_offset"].to_numpy(np.int64)[rows]
        atom_rows = _ranges(starts, counts)
        arrays = {key: values[atom_rows] for key, values in self.arrays.items()}
        return Dataset(
            name if name is not None else self.name,
            self.frames.iloc[rows].drop(columns=["structure", "atom_offset"]),
            arrays,
            structures=[self._atoms[i] for i in rows],
            specs=self._specs,
            spec_index=self._spec_index[rows],
        )

    def select(self, name: str | None = None, **criteria: Any) -> Dataset:
        """Structures whose per-frame columns match every criterion.

        A criterion is a value (equality), a list/tuple/set/array (membership)
        or a callable taking the column (a pandas Series) and returning a
        boolean mask, e.g. ``select(label="train")``, ``select(generation=[0, 1])``,
        ``select(time=lambda t: t > 5.0)``.
        """
        mask = np.ones(len(self), dtype=bool)
        for column, wanted in criteria.items():
            if column not in self.frames:
                raise QuestsError(
                    f"dataset {self.name!r}: no per-frame column {column!r} "
                    f"(have {list(self.frames.columns)})"
                )
            series = self.frames[column]
            if callable(wanted):
                part = np.asarray(wanted(series), dtype=bool)
            elif isinstance(wanted, (list, tuple, set, frozenset, np.ndarray, pd.Series)):
                part = series.isin(list(wanted)).to_numpy()
            else:
                part = (series == wanted).to_numpy()
            mask &= part
        return self.subset(mask, name=name)

    def split_by(self, column: str = "label") -> dict[Any, Dataset]:
        """Split into one dataset per value of a per-frame column, in order of appearance."""
        if column not in self.frames:
            raise QuestsError(
                f"dataset {self.name!r}: no per-frame column {column!r} "
                f"(have {list(self.frames.columns)})"
            )
        values = self.frames[column]
        out: dict[Any, Dataset] = {}
        for value in pd.unique(values):
            mask = values.isna().to_numpy() if pd.isna(value) else (values == value).to_numpy()
            key = value.item() if isinstance(value, np.generic) else value
            out[key] = self.subset(mask, name=str(key))
        return out


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(s, s + c)`` for every pair."""
    total = int(counts.sum())
    if total == 0:
        return np.empty(0, dtype=np.int64)
    ends = np.cumsum(counts)
    shift = np.repeat(starts - (ends - counts), counts)
    return np.arange(total, dtype=np.int64) + shift


def _array_columns(name: str, values: np.ndarray) -> dict[str, np.ndarray]:
    if values.ndim == 1:
        return {name: values}
    flat = values.reshape(values.shape[0], -1)
    if flat.shape[1] == 3:
        suffixes = ["x", "y", "z"]
    else:
        suffixes = [str(i) for i in range(flat.shape[1])]
    return {f"{name}_{s}": flat[:, j] for j, s in enumerate(suffixes)}


def _index_to_text(index: int | slice | str | None) -> str:
    """Canonical text of a frame selection (``":"``, ``"3"``, ``"2:10:2"``).

    Equal selections give equal text (a start of 0 and a step of 1 are left out:
    ``"0:5:1"`` and ``":5"`` are both ``":5"``), so cache keys built on it agree.
    """
    parsed = parse_index(index)
    if isinstance(parsed, int):
        return str(parsed)
    start = None if parsed.start == 0 else parsed.start
    step = None if parsed.step == 1 else parsed.step
    text = f"{'' if start is None else start}:{'' if parsed.stop is None else parsed.stop}"
    return text + (f":{step}" if step else "")


def concat(datasets: Sequence[Dataset], name: str | None = None) -> Dataset:
    """Combine datasets into one (structures in order; arrays missing somewhere are filled
    with NaN for floats and -1 for integers).
    """
    datasets = list(datasets)
    if not datasets:
        raise QuestsError("concat: no datasets")
    specs: list[FileSpec] = []
    spec_index, structures, frames, parts, counts = [], [], [], [], []
    for ds in datasets:
        remap = np.array([_spec_position(specs, s) for s in ds._specs] + [-1], dtype=np.int64)
        spec_index.append(remap[ds._spec_index])
        structures.extend(ds._atoms)
        frames.append(ds.frames.drop(columns=["structure", "atom_offset"]))
        parts.append(ds.arrays)
        counts.append(ds.n_atoms)
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return Dataset(
        name if name is not None else "+".join(ds.name for ds in datasets),
        table,
        _stack_arrays(parts, counts),
        structures=structures,
        specs=specs,
        spec_index=np.concatenate(spec_index),
    )


def _spec_position(specs: list[FileSpec], spec: FileSpec) -> int:
    if spec not in specs:
        specs.append(spec)
    return specs.index(spec)


Dataset.concat = staticmethod(concat)  # type: ignore[attr-defined]
