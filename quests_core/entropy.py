"""Information entropy H, differential entropy dH, diversity, overlap and novelty (SPEC 2).

All functions take descriptor arrays (rows are environments) and a bandwidth
``h`` in Å^-1 that is either a number or a 1-D array of bandwidths; with an
array the result gains a trailing axis of length ``len(h)``, computed in one
pass over the data.

Results are in nats. ``dH`` is finite for any finite input: a test point far
from every reference point gets a large positive value, never ``inf``.

Keyword arguments shared by every function:

``precision``
    ``"float64"`` or ``"float32"`` (GEMM and exponentials in single precision,
    sums in double; about twice as fast). Default: float32 only if the inputs
    are float32 arrays.
``n_threads``
    Threads for this call (Numba and BLAS); default: the process setting.
``progress``
    ``progress(done_rows, total_rows)`` after each block of rows.
``cancel``
    An object with ``is_set()`` (e.g. ``threading.Event``); when set the call
    raises :class:`quests_core.errors.Cancelled` at the next block.
``backend``
    ``"auto"`` (default: a CUDA device through PyTorch when one is present and the
    problem is large, else the Numba CPU kernels), ``"numba"``, ``"torch-cuda"`` or
    ``"torch-cpu"``; ``$QUESTS_BACKEND`` overrides ``"auto"``
    (see :mod:`quests_core.backend`).
"""

from __future__ import annotations

import math

import numpy as np

from ._validate import check_bandwidth, check_descriptors, check_pair
from .backend import backend_log_kernel_sums
from .settings import DEFAULTS
from .threads import thread_limit

#: Default bandwidth (1/Å), the one of :data:`quests_core.settings.DEFAULTS`.
DEFAULT_BANDWIDTH = DEFAULTS.bandwidth
_BLOCK_OPTIONS = {"block_rows", "block_cols", "n_workers"}


def _shape(values: np.ndarray, scalar: bool):
    """Drop the bandwidth axis for a scalar ``h`` (0-d arrays become floats)."""
    out = values[..., 0] if scalar else values
    return float(out) if np.ndim(out) == 0 else out


def _log_sums(
    y, x, h, *, precision=None, n_threads=None, progress=None, cancel=None, backend=None,
    **blocks,
):
    unknown = sorted(set(blocks) - _BLOCK_OPTIONS)
    if unknown:
        raise TypeError(
            f"unexpected keyword argument {unknown[0]!r} (entropy functions take precision, "
            "n_threads, progress, cancel, backend, block_rows, block_cols)"
        )
    harr, scalar = check_bandwidth(h)
    with thread_limit(n_threads):
        logs = backend_log_kernel_sums(
            y, x, harr, backend=backend, precision=precision, progress=progress, cancel=cancel,
            **blocks,
        )
    return logs, scalar


def delta_from_log_sums(log_sums: np.ndarray) -> np.ndarray:
    """``dH(y_i | x) = -log sum_j K(y_i, x_j)`` from the log kernel sums of the test rows."""
    return -np.asarray(log_sums)


def entropy_from_log_sums(log_sums: np.ndarray, n: int) -> np.ndarray:
    """``H = log n - mean_i log sum_j K(x_i, x_j)`` from the log kernel sums of a set of
    ``n`` points against itself (``log_sums`` of shape ``(n, n_bandwidths)``).

    This is ``-(1/n) sum_i log((1/n) sum_j K(x_i, x_j))``, SPEC section 2.
    """
    return math.log(n) - np.asarray(log_sums).mean(axis=0)


def delta_entropy(y, x, h=DEFAULT_BANDWIDTH, **kw) -> np.ndarray:
    """Differential entropy ``dH(y_i | x) = -log sum_j K(y_i, x_j)`` of each test row.

    Returns shape ``(len(y),)`` for a scalar ``h``, ``(len(y), len(h))`` otherwise.
    Bounds: ``dH >= -log len(x)``.
    """
    y, x = check_pair(y, x)
    logs, scalar = _log_sums(y, x, h, **kw)
    return _shape(delta_from_log_sums(logs), scalar)


def entropy_and_delta(x, h=DEFAULT_BANDWIDTH, **kw):
    """``(H(x), dH(x | x))`` from one kernel pass (dH includes the self term)."""
    x = check_descriptors(x)
    logs, scalar = _log_sums(x, x, h, **kw)
    ent = entropy_from_log_sums(logs, x.shape[0])
    return _shape(ent, scalar), _shape(delta_from_log_sums(logs), scalar)


def entropy(x, h=DEFAULT_BANDWIDTH, **kw):
    """Information entropy ``H = -(1/n) sum_i log((1/n) sum_j K(x_i, x_j))`` in nats.

    ``0 <= H <= log n``; ``H = log n + mean_i dH(x_i | x)``.
    """
    return entropy_and_delta(x, h, **kw)[0]


def _logsumexp(a: np.ndarray, axis=0):
    top = np.max(a, axis=axis)
    return top + np.log(np.sum(np.exp(a - top), axis=axis))


def diversity(x, h=DEFAULT_BANDWIDTH, **kw):
    """Diversity ``D = log sum_i exp(dH(x_i | x))``: ``log n`` without overlap, 0 for copies."""
    _, dh = entropy_and_delta(x, h, **kw)
    return _shape(np.atleast_1d(_logsumexp(np.asarray(dh).reshape(len(dh), -1))), np.ndim(h) == 0)


def overlap(y, x, h=DEFAULT_BANDWIDTH, **kw):
    """Fraction of test environments with ``dH(y | x) <= 0`` (covered by the reference)."""
    dh = np.asarray(delta_entropy(y, x, h, **kw))
    return _shape(np.atleast_1d(np.mean(dh.reshape(len(dh), -1) <= 0.0, axis=0)), np.ndim(h) == 0)


def novelty(y, x, h=DEFAULT_BANDWIDTH, **kw):
    """Fraction of test environments with ``dH(y | x) > 0`` (``1 - overlap``)."""
    dh = np.asarray(delta_entropy(y, x, h, **kw))
    return _shape(np.atleast_1d(np.mean(dh.reshape(len(dh), -1) > 0.0, axis=0)), np.ndim(h) == 0)
