"""What the batch commands print and write.

Holds the ``--output`` check (:func:`check_output`, run before any work), the
number format (``%.6g`` for floats, in summaries and tables alike), the summary
and table printers, :func:`finish` (print, write the ``.json/.csv/.parquet``
result, list the skipped files: the common end of every batch command) and the
writers of the other outputs (:func:`write_npy`, :func:`export_structures`).

Invariants
----------
- stdout holds only results; progress, ``wrote PATH`` and the skipped-file list
  go to stderr.
- At most :data:`MAX_PRINT_ROWS` table rows are printed; ``--output`` has all.
- :func:`write_npy` streams the arrays into one memory-mapped file, one array at
  a time (memory: the arrays already held).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from quests_core.errors import QuestsError

EXIT_OK = 0
MAX_PRINT_ROWS = 40
#: extensions written by :func:`finish` (summary and table)
RESULT_SUFFIXES = (".json", ".csv", ".parquet", ".pq")
#: extensions of the structure exports (:func:`export_structures`)
STRUCTURE_SUFFIXES = (".extxyz", ".xyz")


def check_output(args: argparse.Namespace) -> str | None:
    """Validate ``--output`` (and the command's other output options) before any work.

    The allowed extensions are the command's ``outputs`` default; other output
    options are named in its ``extra_outputs`` default (``{dest: extensions}``).
    Returns the lower-case extension of ``--output`` (None without it).
    """
    for dest, allowed in getattr(args, "extra_outputs", {}).items():
        path = getattr(args, dest, None)
        if path:
            check_path(path, allowed, "--" + dest.replace("_", "-"))
    if not args.output:
        return None
    return check_path(args.output, getattr(args, "outputs", ()), f"'{args.command}'")


def check_path(path: str, allowed: Sequence[str], what: str) -> str:
    """The lower-case extension of an output ``path``, checked against ``allowed``.

    Raises
    ------
    QuestsError
        One line naming ``path``: an extension not in ``allowed`` (``what`` names
        the command or option), or a directory that does not exist.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in allowed:
        raise QuestsError(
            f"unsupported output extension {suffix or '(none)'!r} for {what}; use "
            + ", ".join(allowed),
            source=path,
        )
    parent = Path(path).resolve().parent
    if not parent.is_dir():
        raise QuestsError("output directory does not exist", source=path)
    return suffix


def format_value(value: Any) -> str:
    """A summary value as printed: floats with 6 significant digits, lists joined."""
    if isinstance(value, (float, np.floating)):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value)
    return str(value)


def print_summary(summary: Mapping[str, Any]) -> None:
    """``key  value`` lines (the ``skipped`` and ``matrix`` entries are not printed)."""
    width = max((len(k) for k in summary), default=0)
    for key, value in summary.items():
        if isinstance(value, (dict, list)) and key in ("skipped", "matrix"):
            continue
        print(f"{key:<{width}}  {format_value(value)}")


def print_table(table: pd.DataFrame, index: bool = False) -> None:
    """The table with floats as ``%.6g``, cut to :data:`MAX_PRINT_ROWS` rows."""
    with pd.option_context(
        "display.width", 160, "display.max_columns", 20, "display.float_format", "{:.6g}".format
    ):
        if len(table) > MAX_PRINT_ROWS:
            print(table.head(MAX_PRINT_ROWS).to_string(index=index))
            print(f"... {len(table)} rows in total (use --output to save them all)")
        else:
            print(table.to_string(index=index))


def wrote(path: str | Path) -> None:
    """Tell stderr that ``path`` was written."""
    print(f"wrote {path}", file=sys.stderr)


def write_table_to(path: str | None, table: pd.DataFrame) -> None:
    """Write ``table`` to an extra output option's ``path`` (nothing when None)."""
    if path:
        from quests_core.export import write_table

        write_table(table, path)
        wrote(path)


def finish(
    args: argparse.Namespace,
    batch_skipped: Sequence[tuple[str, str]],
    summary: dict[str, Any],
    table: pd.DataFrame | None,
    *,
    index: bool = False,
    show_table: bool = True,
    write: bool = True,
) -> int:
    """Print the summary (and table), write a result ``--output``, list skipped files.

    ``write=False`` when the command has already written ``--output`` itself.
    """
    from quests_core.export import write_result

    if batch_skipped:
        summary["skipped"] = [{"file": f, "error": e} for f, e in batch_skipped]
    print_summary(summary)
    if table is not None and show_table:
        print()
        print_table(table, index=index)
    if write and args.output and Path(args.output).suffix.lower() in RESULT_SUFFIXES:
        write_result(args.output, table, summary, index=index)
        wrote(args.output)
    if batch_skipped:
        print(f"skipped {len(batch_skipped)} bad file(s):", file=sys.stderr)
        for f, e in batch_skipped:
            print(f"  {e}" if f in e else f"  {f}: {e}", file=sys.stderr)
    return EXIT_OK


def write_npy(path: str, arrays: Sequence[np.ndarray]) -> None:
    """The row-wise concatenation of ``arrays`` as one ``.npy`` file, written atomically."""
    from numpy.lib.format import open_memmap

    from quests_core.atomic import atomic_path

    total = sum(a.shape[0] for a in arrays)
    width = arrays[0].shape[1]
    with atomic_path(path) as tmp:
        out = open_memmap(tmp, mode="w+", dtype=arrays[0].dtype, shape=(total, width))
        row = 0
        for a in arrays:
            out[row : row + len(a)] = a
            row += len(a)
        out.flush()
        del out


def export_structures(
    dataset: Any,
    path: str,
    *,
    columns: Mapping[str, np.ndarray] | None = None,
    arrays: Mapping[str, np.ndarray],
) -> None:
    """Write the structures of ``dataset`` with per-frame ``columns`` and per-atom ``arrays``."""
    from quests_core.export import export_dataset

    for name, values in (columns or {}).items():
        dataset.set_column(name, values)
    for name, values in arrays.items():
        dataset.set_array(name, values)
    export_dataset(dataset, path, arrays=list(arrays))
    wrote(path)
