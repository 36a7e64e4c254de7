"""Writing results: extxyz with per-atom arrays, tables as CSV / Parquet / JSON.

* :func:`write_extxyz` writes structures with extra per-atom arrays (``dH``,
  ``cluster``, ...) as extxyz columns and per-frame values (``H``,
  ``mean_dH``, ...) as ``info`` keys, so OVITO and ASE users can colour atoms
  by them.
* :func:`write_table` writes a DataFrame as CSV, Parquet or JSON by extension.
* :func:`write_result` writes a command's table and summary (JSON holds both).

Every file is written to a temporary file in the same directory and renamed
into place, so an interrupted export never leaves half a file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ase import Atoms

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

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------
# Temporary files: named after their writer, removed when stale
# ----------------------------------------------------------------------------

#: A temporary file not modified for this long (seconds) whose writer cannot be
#: checked (another machine, or a name without a writer) is a leftover.
STALE_TEMP_SECONDS = 600.0
#: ``<name>.<host tag>-<pid>.<random>.tmp``: the writer of a temporary file.
_WRITER = re.compile(r"\.(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]+)\.[A-Za-z0-9_]+\.tmp$")
_HOST_TAG: str | None = None


def _host_tag() -> str:
    """Eight hex digits naming this machine, boot and PID namespace: a process id in a
    temporary file's name is only checked where this tag matches."""
    global _HOST_TAG
    if _HOST_TAG is None:
        import hashlib
        import socket

        parts = [socket.gethostname()]
        for probe in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
            try:
                parts.append(Path(probe).read_text().strip() if "boot" in probe
                             else str(os.stat(probe).st_ino))
            except OSError:
                parts.append("")
        _HOST_TAG = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]
    return _HOST_TAG


def temp_prefix(name: str) -> str:
    """The prefix of a temporary file written for ``name`` by this process: ``name``,
    this machine's tag and this process id (see :func:`remove_stale_temp_files`)."""
    return f"{name}.{_host_tag()}-{os.getpid()}."


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":  # pragma: no cover - os.kill(pid, 0) would end it on Windows
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: alive, another user's
        return True
    return True


def is_stale_temp(path: str | os.PathLike, grace: float = STALE_TEMP_SECONDS,
                  now: float | None = None) -> bool:
    """Whether the temporary file ``path`` (``*.tmp``) is a writer's leftover.

    Stale: its name says it was written by a process of this machine that has
    ended, or it was not modified for ``grace`` seconds and its writer cannot be
    checked (another machine, or an older name without the writer). A file of a
    live writer on this machine is never stale, however old.
    """
    path = Path(path)
    if not path.name.endswith(".tmp"):
        return False
    match = _WRITER.search(path.name)
    if match and match["host"] == _host_tag():
        return not _pid_alive(int(match["pid"]))
    try:
        mtime = path.lstat().st_mtime
    except OSError:
        return False
    return (time.time() if now is None else now) - mtime > grace


def remove_stale_temp_files(folder: str | os.PathLike, grace: float = STALE_TEMP_SECONDS,
                            match=None) -> list[Path]:
    """Delete the stale temporary files (``*.tmp``, see :func:`is_stale_temp`) directly in
    ``folder``, keeping those of live writers; returns the removed paths.

    ``match(name)`` restricts which names count as this folder's temporary files.
    Never raises: an unreadable folder or a file that cannot be removed is skipped.
    """
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not name.endswith(".tmp") or (match is not None and not match(name)):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
        except OSError:
            continue
        path = Path(entry.path)
        if not is_stale_temp(path, grace, now):
            continue
        try:
            path.unlink()
        except OSError as exc:
            log.info("could not remove the leftover temporary file %s (%s)", path, exc)
            continue
        removed.append(path)
    if removed:
        log.info("removed %d leftover temporary file(s) in %s", len(removed), folder)
    return removed


@contextlib.contextmanager
def _atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` on success.

    The temporary file is ``.<name>.<host>-<pid>.<random>.tmp``: a later open of the
    folder can tell a dead writer's leftover (see :func:`remove_stale_temp_files`).
    """
    final = Path(path)
    if final.is_dir():
        raise QuestsError("is a directory, expected an output file name", source=str(path))
    parent = final.parent if str(final.parent) else Path(".")
    if not parent.is_dir():
        raise QuestsError("output directory does not exist", source=str(path))
    try:
        fd, name = tempfile.mkstemp(prefix=temp_prefix(f".{final.name}"), suffix=".tmp",
                                    dir=parent)
    except OSError as exc:
        raise QuestsError(f"cannot write ({exc.strerror})", source=str(path)) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, final)
    except OSError as exc:
        raise QuestsError(f"cannot write ({exc.strerror or exc})", source=str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)


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
    with _atomic_path(path) as tmp, open(tmp, "w") as fd:
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
        ``H``, ``mean_dH``, ``frac_novel``, ``largest_cluster`` that exist,
        plus ``label``, ``generation`` and ``time`` when set).
    """
    names = list(dataset.arrays) if arrays is None else list(arrays)
    missing = [n for n in names if n not in dataset.arrays]
    if missing:
        raise QuestsError(f"dataset {dataset.name!r} has no per-atom array(s) {missing}")
    frames = dataset.frames
    if columns is None:
        columns = [c for c in ("H", "mean_dH", "frac_novel", "largest_cluster") if c in frames]
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
    with _atomic_path(path) as tmp:
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
    with _atomic_path(path) as tmp:
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
