"""dH, entropy of frames and overlap on a ``dask.distributed`` cluster.

The functions here give the same numbers as the single-process ones of
:mod:`quests_core.entropy`, bit for bit with the default Numba backend: test
rows are split into blocks whose size is a multiple of the kernel's row block
(:data:`quests_core.kernels.DEFAULT_BLOCK_ROWS`), so every row sees the same
arithmetic as in one process.

``client`` may be a :class:`distributed.Client`, a scheduler address
(``"tcp://host:8786"``) or None, in which case a :class:`distributed.LocalCluster`
is started for the call and closed afterwards (see
:func:`quests_core.dask_tools.dask_client`).

Inside a worker process one kernel runs at a time (a process-wide lock), using
``n_threads`` Numba/BLAS threads: threads of one worker never oversubscribe the
cores, and Numba's workqueue threading layer (not thread-safe) is never entered
from two threads at once.

Dask is imported lazily: the rest of ``quests_core`` works without it.
Install it with ``pip install "dask[dataframe]" distributed``.

Invariants
----------
- The formulas are those of :mod:`quests_core.entropy`
  (:func:`~quests_core.entropy.entropy_from_log_sums`,
  :func:`~quests_core.entropy.delta_from_log_sums`) and the overlap matrix is
  :class:`quests_core.overlaps.OverlapMatrix`: this module only schedules.
- Defaults (``h``, ``backend``, threads) come from :data:`quests_core.settings.DEFAULTS`.
- The client plumbing (:func:`~quests_core.dask_tools.dask_client`) is
  :mod:`quests_core.dask_tools` and reading a chunked store as a Dask frame
  (:func:`~quests_core.chunk_store.read_atoms_dask`) is
  :mod:`quests_core.chunk_store`; this module never imports :mod:`quests_core.chunked`.
- Memory: a bounded number of row blocks in flight per worker thread
  (:func:`quests_core.dask_tools.run_bounded`); the reference is sent once.
- Only arrays travel to the workers here, never paths. Code that sends paths (the
  CLI's ``dh --store --scheduler``) makes them absolute and checks that every worker
  sees them first (:func:`quests_core.dask_tools.paths_for_workers`,
  :func:`quests_core.dask_tools.check_workers_see`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ._validate import check_bandwidth, check_descriptors, check_pair
from .backend import Backend, select_backend
from .dask_tools import KERNEL_LOCK, dask_client, run_bounded
from .entropy import _shape, delta_from_log_sums, entropy_from_log_sums
from .errors import QuestsError
from .kernels import DEFAULT_BLOCK_ROWS
from .overlaps import OverlapMatrix
from .settings import DEFAULTS
from .threads import thread_limit

__all__ = [
    "DEFAULT_CHUNK_ROWS",
    "dask_delta_entropy",
    "dask_frame_entropies",
    "dask_overlap_matrix",
]

#: test rows per task (a multiple of the kernel's row block)
DEFAULT_CHUNK_ROWS = 65536


def _chunk_rows(chunk_rows: int) -> int:
    if isinstance(chunk_rows, bool) or int(chunk_rows) != chunk_rows or chunk_rows < 1:
        raise QuestsError(f"chunk_rows must be an integer >= 1, got {chunk_rows!r}")
    blocks = -(-int(chunk_rows) // DEFAULT_BLOCK_ROWS)
    return blocks * DEFAULT_BLOCK_ROWS


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
            out[i] = entropy_from_log_sums(logs, len(xf))
    return out


def _covered_task(y_block, x, h, precision, backend, n_threads):
    """Number of rows of a block with dH <= 0 against ``x``, per bandwidth."""
    with KERNEL_LOCK, thread_limit(n_threads):
        logs = select_backend(backend).log_kernel_sums(y_block, x, h, precision=precision)
    return np.sum(delta_from_log_sums(logs) <= 0.0, axis=0)


def _is_dask_array(a) -> bool:
    return type(a).__module__.startswith("dask.") and hasattr(a, "to_delayed")


def dask_delta_entropy(
    y,
    x,
    h=DEFAULTS.bandwidth,
    *,
    client=None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    precision=None,
    backend: str | Backend | None = DEFAULTS.backend,
    n_threads: int | None = DEFAULTS.threads,
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
        See :func:`quests_core.dask_tools.dask_client`.
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
            # a Dask block is checked on its worker (never gathered); numpy rows were checked here
            block = c.compute(blocks[i]) if lazy else y[i * rows : (i + 1) * rows]
            return c.submit(_log_sums_task, block, x_future, harr, precision, backend, n_threads,
                            i * rows, lazy, pure=False)

        parts = run_bounded(c, submit, n_blocks)
    return _shape(delta_from_log_sums(np.concatenate(parts)), scalar)


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
    h=DEFAULTS.bandwidth,
    *,
    client=None,
    precision=None,
    backend: str | Backend | None = DEFAULTS.backend,
    n_threads: int | None = DEFAULTS.threads,
    frames_per_task: int = 16,
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
        parts = run_bounded(
            c,
            lambda i: c.submit(
                _frame_entropy_task, groups[i], harr, precision, backend, n_threads, pure=False
            ),
            len(groups),
        )
    return _shape(np.concatenate(parts), scalar)


def dask_overlap_matrix(
    groups: Mapping[str, np.ndarray] | Sequence[np.ndarray],
    h: float = DEFAULTS.bandwidth,
    *,
    client=None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    precision=None,
    backend: str | Backend | None = DEFAULTS.backend,
    n_threads: int | None = DEFAULTS.threads,
    as_frame: bool = True,
) -> pd.DataFrame | OverlapMatrix:
    """``overlap(row | column)`` for every ordered pair of descriptor sets, on a Dask cluster.

    Parameters
    ----------
    groups : mapping of name to descriptors, or sequence of descriptors
        The datasets (names ``"0", "1", ...`` for a sequence).
    h : float
        Bandwidth.
    client, chunk_rows, precision, backend, n_threads
        As in :func:`dask_delta_entropy`.
    as_frame : bool
        Return :meth:`OverlapMatrix.to_frame() <quests_core.overlaps.OverlapMatrix.to_frame>`
        (default) instead of the :class:`~quests_core.overlaps.OverlapMatrix`.

    Returns
    -------
    pandas.DataFrame or OverlapMatrix
        Rows are test sets, columns reference sets; entry ``(a, b)`` equals
        ``quests_core.overlaps.overlap_matrix(groups, h).matrix`` (the fraction
        of ``a`` with ``dH(a | b) <= 0``).
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
        counts = run_bounded(
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
    index = {name: i for i, name in enumerate(names)}
    covered = np.zeros((len(names), len(names)), dtype=np.int64)
    for (a, b, _), n in zip(tasks, counts, strict=True):
        covered[index[a], index[b]] += int(n[0])
    sizes = np.array([len(arrays[name]) for name in names], dtype=np.float64)
    result = OverlapMatrix(
        names=[str(name) for name in names],
        matrix=covered / sizes[:, None],  # the mean of (dH <= 0) over each row set
        bandwidths=np.full(len(names), float(harr[0])),
        sizes={str(name): len(arrays[name]) for name in names},
    )
    return result.to_frame() if as_frame else result
