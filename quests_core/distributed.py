"""dH, entropy of frames and overlap on a ``dask.distributed`` cluster.

The functions here give the same numbers as the single-process ones of
:mod:`quests_core.entropy`, bit for bit with the default Numba backend: test
rows are split into blocks whose size is a multiple of the kernel's row block
(:data:`quests_core.kernels.DEFAULT_BLOCK_ROWS`), so every row sees the same
arithmetic as in one process.

``client`` may be a :class:`distributed.Client`, a scheduler address
(``"tcp://host:8786"``) or None, in which case a :class:`distributed.LocalCluster`
is started for the call and closed afterwards (see :func:`dask_client`).

Inside a worker process one kernel runs at a time (a process-wide lock), using
``n_threads`` Numba/BLAS threads: threads of one worker never oversubscribe the
cores, and Numba's workqueue threading layer (not thread-safe) is never entered
from two threads at once.

Dask is imported lazily: the rest of ``quests_core`` works without it.
Install it with ``pip install "dask[dataframe]" distributed``.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._validate import check_bandwidth, check_descriptors, check_pair
from .backend import Backend, select_backend
from .entropy import _shape
from .errors import QuestsError
from .kernels import DEFAULT_BLOCK_ROWS
from .threads import thread_limit

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "dask_client",
    "dask_delta_entropy",
    "dask_frame_entropies",
    "dask_overlap_matrix",
    "read_atoms_dask",
]

#: test rows per task (a multiple of the kernel's row block)
DEFAULT_CHUNK_ROWS = 65536
#: tasks kept in flight per worker thread (bounds the memory of numpy inputs)
_IN_FLIGHT_PER_THREAD = 2
#: one kernel computation at a time per process (see the module docstring)
KERNEL_LOCK = threading.Lock()


def _require_distributed():
    try:
        import dask  # noqa: F401
        import distributed
    except ImportError:
        raise QuestsError(
            'Dask support needs dask and distributed (pip install "dask[dataframe]" distributed)'
        ) from None
    return distributed


#: seconds to wait for a scheduler given by address
SCHEDULER_TIMEOUT_S = 10


@contextlib.contextmanager
def dask_client(client=None, **cluster_kwargs) -> Iterator[Any]:
    """A ``distributed.Client``: the one given, one connected to an address, or a local one.

    Parameters
    ----------
    client : Client, str or None
        An existing client (returned as is), a scheduler address, or None (or
        ``"local"``) to start a :class:`distributed.LocalCluster` that is closed
        on exit.
    **cluster_kwargs
        Passed to ``LocalCluster``. Default: one in-process worker with as many
        threads as cores (``n_workers=1, processes=False``) and no dashboard
        (pass ``dashboard_address=":8787", scheduler_kwargs={}`` to get one).
    """
    distributed = _require_distributed()
    if client is not None and not isinstance(client, str):
        yield client
        return
    if isinstance(client, str) and client != "local":
        try:
            own = distributed.Client(client, timeout=SCHEDULER_TIMEOUT_S)
        except (OSError, TimeoutError) as exc:
            raise QuestsError(
                f"cannot reach the Dask scheduler at {client} "
                f"({' '.join(str(exc).split())[:160] or type(exc).__name__})"
            ) from None
        try:
            yield own
        finally:
            own.close()
        return
    kwargs: dict[str, Any] = {
        "n_workers": 1,
        "threads_per_worker": os.cpu_count() or 1,
        "processes": False,
        # no dashboard; the scheduler's small HTTP server takes any free port (not 8787)
        "dashboard_address": ":0",
        "scheduler_kwargs": {"dashboard": False},
    }
    kwargs.update(cluster_kwargs)
    with distributed.LocalCluster(**kwargs) as cluster, distributed.Client(cluster) as own:
        yield own


def _chunk_rows(chunk_rows: int) -> int:
    if isinstance(chunk_rows, bool) or int(chunk_rows) != chunk_rows or chunk_rows < 1:
        raise QuestsError(f"chunk_rows must be an integer >= 1, got {chunk_rows!r}")
    blocks = -(-int(chunk_rows) // DEFAULT_BLOCK_ROWS)
    return blocks * DEFAULT_BLOCK_ROWS


def _n_threads_total(client) -> int:
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:  # pragma: no cover - scheduler without workers yet
        return 1


def _log_sums_task(y_block, x, h, precision, backend, n_threads, offset, check):
    """Log kernel sums of a block of test rows (runs on a worker)."""
    y_block = np.asarray(y_block)
    if check:
        try:
            y_block = check_descriptors(y_block, "test descriptors y")
        except QuestsError as exc:
            raise QuestsError(f"{exc} (rows {offset}..{offset + len(y_block) - 1})") from None
    with KERNEL_LOCK, thread_limit(n_threads):
        return select_backend(backend).log_kernel_sums(y_block, x, h, precision=precision)


def _frame_entropy_task(frames, h, precision, backend, n_threads):
    """Entropy of each frame of a list (runs on a worker); ``(len(frames), len(h))``."""
    out = np.empty((len(frames), len(h)))
    with KERNEL_LOCK, thread_limit(n_threads):
        engine = select_backend(backend)
        for i, xf in enumerate(frames):
            logs = engine.log_kernel_sums(xf, xf, h, precision=precision)
            out[i] = np.log(len(xf)) - logs.mean(axis=0)
    return out


def _covered_task(y_block, x, h, precision, backend, n_threads):
    """Number of rows of a block with dH <= 0 against ``x``, per bandwidth."""
    with KERNEL_LOCK, thread_limit(n_threads):
        logs = select_backend(backend).log_kernel_sums(y_block, x, h, precision=precision)
    return np.sum(-logs <= 0.0, axis=0)


def _is_dask_array(a) -> bool:
    return type(a).__module__.startswith("dask.") and hasattr(a, "to_delayed")


def _run_bounded(client, submit, n_tasks: int) -> list:
    """Run ``submit(i)`` for ``i < n_tasks``, a bounded number in flight; results in order."""
    from distributed import as_completed

    limit = max(2, _IN_FLIGHT_PER_THREAD * _n_threads_total(client))
    results: list = [None] * n_tasks
    running: dict[str, tuple[int, Any]] = {}
    pending = as_completed()

    def launch(i: int) -> None:
        fut = submit(i)
        running[fut.key] = (i, fut)
        pending.add(fut)

    try:
        for i in range(min(limit, n_tasks)):
            launch(i)
        submitted = min(limit, n_tasks)
        for fut in pending:
            i, _ = running.pop(fut.key)
            results[i] = fut.result()
            fut.release()
            if submitted < n_tasks:
                launch(submitted)
                submitted += 1
    except BaseException:
        client.cancel([f for _, f in running.values()])
        raise
    return results


def dask_delta_entropy(
    y,
    x,
    h=0.015,
    *,
    client=None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    precision=None,
    backend: str | Backend | None = "numba",
    n_threads: int | None = None,
) -> np.ndarray:
    """``dH(y_i | x)`` of every test row, computed in row blocks on a Dask cluster.

    Parameters
    ----------
    y : numpy.ndarray or dask.array.Array
        Test descriptors ``(m, width)``; a Dask array is read block by block on
        the workers (never gathered), e.g. from ``da.from_zarr`` or ``da.from_npy_stack``.
    x : numpy.ndarray
        Reference descriptors (sent once to every worker).
    h : float or 1-D array
        Bandwidth(s), as in :func:`quests_core.delta_entropy`.
    client : Client, str or None
        See :func:`dask_client`.
    chunk_rows : int
        Test rows per task (rounded up to a multiple of 256).
    precision, backend, n_threads
        Kernel precision, backend (:mod:`quests_core.backend`) and threads per task.

    Returns
    -------
    numpy.ndarray
        ``(m,)`` for a scalar ``h``, ``(m, len(h))`` otherwise; equal to
        :func:`quests_core.delta_entropy` for the same inputs.
    """
    harr, scalar = check_bandwidth(h)
    rows = _chunk_rows(chunk_rows)
    lazy = _is_dask_array(y)
    if lazy:
        x = check_descriptors(x, "reference descriptors x")
        if y.ndim != 2 or y.shape[1] != x.shape[1]:
            raise QuestsError(
                f"test descriptors y have shape {y.shape}, reference has {x.shape[1]} columns"
            )
        y = y.rechunk((rows, -1))
        blocks = list(y.to_delayed().ravel())
        n_blocks = len(blocks)
    else:
        y, x = check_pair(y, x)
        n_blocks = -(-len(y) // rows)
    if precision is None and lazy:
        precision = "float32" if (y.dtype == np.float32 and x.dtype == np.float32) else "float64"
    with dask_client(client) as c:
        x_future = c.scatter(x, broadcast=True, hash=False)

        def submit(i: int):
            if lazy:
                block = c.compute(blocks[i])
                return c.submit(
                    _log_sums_task,
                    block,
                    x_future,
                    harr,
                    precision,
                    backend,
                    n_threads,
                    i * rows,
                    True,
                    pure=False,
                )
            return c.submit(
                _log_sums_task,
                y[i * rows : (i + 1) * rows],
                x_future,
                harr,
                precision,
                backend,
                n_threads,
                i * rows,
                False,
                pure=False,
            )

        parts = _run_bounded(c, submit, n_blocks)
    return _shape(-np.concatenate(parts), scalar)


def _split_frames(x, n_atoms) -> list[np.ndarray]:
    if n_atoms is None:
        frames = [check_descriptors(f, f"frame {i} descriptors") for i, f in enumerate(x)]
        if not frames:
            raise QuestsError("no frames given")
        return frames
    x = check_descriptors(x, "descriptors x")
    counts = np.asarray(n_atoms, dtype=np.int64).reshape(-1)
    if counts.size == 0 or np.any(counts < 1):
        raise QuestsError("n_atoms must list at least one frame, each with >= 1 atom")
    if counts.sum() != len(x):
        raise QuestsError(f"n_atoms sums to {int(counts.sum())}, descriptors have {len(x)} rows")
    return np.split(x, np.cumsum(counts)[:-1])


def dask_frame_entropies(
    x,
    n_atoms: Sequence[int] | np.ndarray | None = None,
    h=0.015,
    *,
    client=None,
    frames_per_task: int = 16,
    precision=None,
    backend: str | Backend | None = "numba",
    n_threads: int | None = None,
) -> np.ndarray:
    """Information entropy ``H`` of every frame, frames spread over a Dask cluster.

    Parameters
    ----------
    x : numpy.ndarray or sequence of numpy.ndarray
        Descriptors of all frames concatenated (with ``n_atoms``), or one
        array per frame (``n_atoms=None``).
    n_atoms : sequence of int, optional
        Atoms of each frame, in order.
    h : float or 1-D array
        Bandwidth(s).
    client, precision, backend, n_threads
        As in :func:`dask_delta_entropy`.
    frames_per_task : int
        Frames computed by one task.

    Returns
    -------
    numpy.ndarray
        ``(n_frames,)`` or ``(n_frames, len(h))``; entry ``f`` equals
        ``quests_core.entropy(frame_f, h)``.
    """
    harr, scalar = check_bandwidth(h)
    frames = _split_frames(x, n_atoms)
    if isinstance(frames_per_task, bool) or int(frames_per_task) < 1:
        raise QuestsError(f"frames_per_task must be an integer >= 1, got {frames_per_task!r}")
    per = int(frames_per_task)
    groups = [frames[i : i + per] for i in range(0, len(frames), per)]
    with dask_client(client) as c:
        parts = _run_bounded(
            c,
            lambda i: c.submit(
                _frame_entropy_task, groups[i], harr, precision, backend, n_threads, pure=False
            ),
            len(groups),
        )
    return _shape(np.concatenate(parts), scalar)


def dask_overlap_matrix(
    groups: Mapping[str, np.ndarray] | Sequence[np.ndarray],
    h: float = 0.015,
    *,
    client=None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    precision=None,
    backend: str | Backend | None = "numba",
    n_threads: int | None = None,
) -> pd.DataFrame:
    """``overlap(row | column)`` for every ordered pair of descriptor sets, on a Dask cluster.

    Parameters
    ----------
    groups : mapping of name to descriptors, or sequence of descriptors
        The datasets (names ``"0", "1", ...`` for a sequence).
    h : float
        Bandwidth.
    client, chunk_rows, precision, backend, n_threads
        As in :func:`dask_delta_entropy`.

    Returns
    -------
    pandas.DataFrame
        Rows are test sets, columns reference sets; entry ``(a, b)`` equals
        ``quests_core.overlap(groups[a], groups[b], h)`` (the fraction of ``a``
        with ``dH(a | b) <= 0``).
    """
    harr, scalar = check_bandwidth(h)
    if not scalar:
        raise QuestsError("the overlap matrix takes one bandwidth h (a number)")
    if not isinstance(groups, Mapping):
        groups = {str(i): g for i, g in enumerate(groups)}
    if not groups:
        raise QuestsError("no descriptor sets given")
    names = list(groups)
    arrays = {name: check_descriptors(groups[name], f"descriptors of {name!r}") for name in names}
    widths = {a.shape[1] for a in arrays.values()}
    if len(widths) > 1:
        raise QuestsError(f"descriptor sets have different widths {sorted(widths)}")
    rows = _chunk_rows(chunk_rows)
    tasks = []  # (row name, column name, row block)
    for a in names:
        for b in names:
            for i0 in range(0, len(arrays[a]), rows):
                tasks.append((a, b, i0))
    with dask_client(client) as c:
        refs = {name: c.scatter(arr, broadcast=True, hash=False) for name, arr in arrays.items()}
        counts = _run_bounded(
            c,
            lambda t: c.submit(
                _covered_task,
                arrays[tasks[t][0]][tasks[t][2] : tasks[t][2] + rows],
                refs[tasks[t][1]],
                harr,
                precision,
                backend,
                n_threads,
                pure=False,
            ),
            len(tasks),
        )
    matrix = pd.DataFrame(0.0, index=names, columns=names)
    for (a, b, _), n in zip(tasks, counts, strict=True):
        matrix.loc[a, b] += float(n[0])
    for a in names:
        matrix.loc[a] /= len(arrays[a])
    matrix.index.name = "test"
    matrix.columns.name = "reference"
    return matrix


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

    from .chunked import MANIFEST_NAME, ChunkStore

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
