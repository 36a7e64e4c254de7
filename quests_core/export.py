"""Writing results: extxyz with per-atom arrays, tables as CSV / Parquet / JSON.

* :func:`write_extxyz` writes structures with extra per-atom arrays (``dH``,
  ``cluster``, ...) as extxyz columns and per-frame values (``H``,
  ``mean_dH``, ...) as ``info`` keys, so OVITO and ASE users can colour atoms
  by them.
* :func:`write_table` writes a DataFrame as CSV, Parquet or JSON by extension.
* :func:`write_result` writes a command's table and summary (JSON holds both).

Every file is written through :func:`quests_core.atomic.atomic_path` (a
temporary file in the same directory renamed into place), so an interrupted
export never leaves half a file. The temporary-file helpers are
:mod:`quests_core.atomic`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ase import Atoms

from quests_core.atomic import atomic_path
from quests_core.errors import QuestsError

__all__ = [
    "TABLE_FORMATS",
    "export_dataset",
    "table_format",
    "to_jsonable",
    "write_extxyz",
    "write_json",
    "write_result",
    "write_table",
]

#: extension -> table format
TABLE_FORMATS: dict[str, str] = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".json": "json",
}
EXTXYZ_EXTENSIONS = (".extxyz", ".xyz")


# ----------------------------------------------------------------------------
# extxyz
# ----------------------------------------------------------------------------


def _info_value(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_extxyz(
    path: str | os.PathLike,
    structures: Iterable[Atoms],
    arrays: Mapping[str, np.ndarray] | None = None,
    info: pd.DataFrame | Mapping[str, Sequence[Any]] | None = None,
) -> Path:
    """Write structures to extxyz with extra per-atom arrays and per-frame info.

    Parameters
    ----------
    path : path-like
        Output file (``.extxyz`` or ``.xyz``; always written as extxyz).
    structures : iterable of ase.Atoms
        Streamed: only one structure is held at a time.
    arrays : mapping of str to array, optional
        Per-atom arrays aligned with the concatenated atoms of ``structures``
        (e.g. ``dH`` with one value per atom, ``cluster`` ids); each becomes an
        extxyz column.
    info : DataFrame or mapping of str to sequence, optional
        Per-frame values (one per structure, e.g. ``H``, ``mean_dH``) written
        as ``info`` keys of each frame.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    QuestsError
        If an array does not match the number of atoms, or the file cannot be written.
    """
    from ase.io import write

    arrays = {str(k): np.asarray(v) for k, v in (arrays or {}).items()}
    frame_info: dict[str, np.ndarray] = {}
    if info is not None:
        frame_info = {str(k): np.asarray(v) for k, v in info.items()}
    offset = 0
    n_frames = 0
    with atomic_path(path) as tmp, open(tmp, "w") as fd:
        for i, atoms in enumerate(structures):
            n = len(atoms)
            out = atoms.copy()
            out.calc = atoms.calc
            for name, values in arrays.items():
                if values.shape[0] < offset + n:
                    raise QuestsError(
                        f"per-atom array {name!r} has {values.shape[0]} rows, but structure {i} "
                        f"needs rows {offset}..{offset + n - 1}",
                        source=str(path),
                    )
                out.arrays[name] = np.ascontiguousarray(values[offset : offset + n])
            for name, values in frame_info.items():
                if i >= len(values):
                    raise QuestsError(
                        f"per-frame column {name!r} has {len(values)} values, "
                        f"structure {i} has none",
                        source=str(path),
                    )
                out.info[name] = _info_value(values[i])
            write(fd, out, format="extxyz")
            offset += n
            n_frames += 1
        for name, values in arrays.items():
            if values.shape[0] != offset:
                raise QuestsError(
                    f"per-atom array {name!r} has {values.shape[0]} rows for {offset} atoms",
                    source=str(path),
                )
        for name, values in frame_info.items():
            if len(values) != n_frames:
                raise QuestsError(
                    f"per-frame column {name!r} has {len(values)} values for {n_frames} frames",
                    source=str(path),
                )
    return Path(path)


def export_dataset(
    dataset: Any,
    path: str | os.PathLike,
    arrays: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
) -> Path:
    """Write a :class:`~quests_core.dataset.Dataset` to extxyz.

    Parameters
    ----------
    dataset : Dataset
    path : path-like
    arrays : sequence of str, optional
        Per-atom arrays to write (default: all of ``dataset.arrays``).
    columns : sequence of str, optional
        Per-frame columns written as info keys (default: the computed columns
        ``H``, ``H_stderr``, ``mean_dH``, ``frac_novel``, ``max_dH``,
        ``largest_cluster`` that exist,
        plus ``label``, ``generation`` and ``time`` when set).
    """
    names = list(dataset.arrays) if arrays is None else list(arrays)
    missing = [n for n in names if n not in dataset.arrays]
    if missing:
        raise QuestsError(f"dataset {dataset.name!r} has no per-atom array(s) {missing}")
    frames = dataset.frames
    if columns is None:
        computed = ("H", "H_stderr", "mean_dH", "frac_novel", "max_dH", "largest_cluster")
        columns = [c for c in computed if c in frames]
        if (frames["label"] != "").any():
            columns.append("label")
        if (frames["generation"] >= 0).any():
            columns.append("generation")
        if frames["time"].notna().any():
            columns.append("time")
    unknown = [c for c in columns if c not in frames]
    if unknown:
        raise QuestsError(f"dataset {dataset.name!r} has no per-frame column(s) {unknown}")
    return write_extxyz(
        path,
        dataset.iter_structures(),
        {n: dataset.arrays[n] for n in names},
        {c: frames[c].to_numpy() for c in columns},
    )


# ----------------------------------------------------------------------------
# Tables and JSON
# ----------------------------------------------------------------------------


def table_format(path: str | os.PathLike) -> str:
    """``"csv"``, ``"parquet"`` or ``"json"`` from the file extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in TABLE_FORMATS:
        raise QuestsError(
            f"unknown table extension {suffix or '(none)'!r}; use one of "
            f"{', '.join(sorted(TABLE_FORMATS))}",
            source=str(path),
        )
    return TABLE_FORMATS[suffix]


def to_jsonable(value: Any) -> Any:
    """Convert numpy/pandas values to plain JSON types (NaN and inf become None)."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, pd.DataFrame):
        return [to_jsonable(r) for r in value.to_dict(orient="records")]
    if isinstance(value, pd.Series):
        return to_jsonable(value.tolist())
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    """Write ``payload`` (converted with :func:`to_jsonable`) as indented JSON."""
    text = json.dumps(to_jsonable(payload), indent=2, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")
    return Path(path)


def write_table(table: pd.DataFrame, path: str | os.PathLike, index: bool = False) -> Path:
    """Write a table as CSV, Parquet or JSON (list of records), chosen by extension.

    Parameters
    ----------
    table : pandas.DataFrame
    path : path-like
        ``.csv``, ``.parquet`` / ``.pq`` or ``.json``.
    index : bool
        Also write the index (e.g. the row labels of an overlap matrix).
    """
    fmt = table_format(path)
    with atomic_path(path) as tmp:
        if fmt == "csv":
            table.to_csv(tmp, index=index)
        elif fmt == "parquet":
            table.to_parquet(tmp, index=index)
        else:
            data = table.reset_index() if index else table
            tmp.write_text(json.dumps(to_jsonable(data), indent=2, allow_nan=False) + "\n")
    return Path(path)


def write_result(
    path: str | os.PathLike,
    table: pd.DataFrame | None = None,
    summary: Mapping[str, Any] | None = None,
    index: bool = False,
) -> Path:
    """Write a command's result: JSON holds ``{"summary": ..., "rows": [...]}``; CSV and
    Parquet hold the table (or the summary as a one-row table when there is no table).
    """
    fmt = table_format(path)
    if fmt == "json":
        payload: dict[str, Any] = {}
        if summary is not None:
            payload["summary"] = summary
        if table is not None:
            payload["rows"] = table.reset_index() if index else table
        return write_json(path, payload)
    if table is None:
        table = pd.DataFrame([to_jsonable(summary or {})])
        index = False
    return write_table(table, path, index=index)
