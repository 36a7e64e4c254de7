"""Blocked Gaussian kernel sums in log space: ``log sum_j exp(-|y_i - x_j|^2 / 2h^2)``.

Every quantity of SPEC section 2 (H, dH, D, overlap) is a function of these
log kernel sums. The computation is organised for speed and bounded memory:

* both sets are centred on the reference mean (distances are unchanged, the
  ``|y|^2 + |x|^2 - 2 y.x`` expansion loses far less precision);
* ``y.x`` comes from single-threaded BLAS (GEMM) on blocks of
  ``block_rows x block_cols`` that stay in L2 cache;
* a GIL-free Numba pass folds each block into a running log-sum-exp per row
  (the running maximum term is the nearest reference point), for all
  bandwidths at once; row blocks are spread over Python threads, so exactly one
  pool of threads uses the cores;
* the exponential is a branch-free polynomial on ``[-80, 0]`` relative to the
  row's largest term (smaller exponents are clamped to -80: each such term adds at
  most ``e^-80 = 2e-35`` of the largest one), so the loop vectorises;
* when the nearest pair of a block is a near-duplicate, where the expansion
  cancels, it is recomputed exactly: an exact duplicate contributes exactly 1 and
  its dH is never spuriously > 0.

Peak memory beyond the inputs and the ``(len(y), len(h))`` result is
``O(workers * block_rows * (block_cols + d))`` plus a centred copy of ``x``.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor

import numba as nb
import numpy as np
from threadpoolctl import ThreadpoolController

from .errors import Cancelled, QuestsError

_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238
_LN2_LO = 1.9082149292705877e-10
#: squared distances below this fraction of |y|^2 are recomputed exactly (cancellation)
_NEAR_DUPLICATE = 1e-4
#: exponents below this (relative to the row's largest term) are clamped to it
_T_MIN = -80.0

#: a block of squared distances stays in L2 cache (256 x 1024 x 8 B = 2 MB)
DEFAULT_BLOCK_ROWS = 256
DEFAULT_BLOCK_COLS = 1024


# 1.5 * 2^52 (float64) and 1.5 * 2^23 (float32): adding an integer-valued float to these
# puts the integer in the low mantissa bits, from where it moves into the exponent field
_MAGIC64 = 6755399441055744.0
_MAGIC64_BITS = 0x4338000000000000
_MAGIC32 = 12582912.0
_MAGIC32_BITS = 0x4B400000


@nb.njit(inline="always", fastmath=True)
def _exp_neg64(t):
    """exp(t) for t in [-80, 0] within 1e-15 relative, branch-free so loops vectorise.

    Cody-Waite reduction ``t = k ln2 + r``, ``|r| <= ln2/2``, a degree-12 Taylor
    polynomial for ``exp(r)`` and ``2^k`` assembled in the exponent bits.
    """
    kf = np.floor(t * _LOG2E + 0.5)
    r = (t - kf * _LN2_HI) - kf * _LN2_LO
    p = 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    biased = np.float64(kf + (1023.0 + _MAGIC64)).view(np.int64) - np.int64(_MAGIC64_BITS)
    return p * np.int64(biased << 52).view(np.float64)


@nb.njit(inline="always", fastmath=True)
def _exp_neg32(t):
    """float32 exp(t) for t in [-80, 0] (degree-6 polynomial, ~2 ulp of float32)."""
    kf = np.floor(t * np.float32(_LOG2E) + np.float32(0.5))
    r = (t - kf * np.float32(0.693145751953125)) - kf * np.float32(1.428606765330187e-06)
    p = np.float32(1.0 / 720.0)
    p = p * r + np.float32(1.0 / 120.0)
    p = p * r + np.float32(1.0 / 24.0)
    p = p * r + np.float32(1.0 / 6.0)
    p = p * r + np.float32(0.5)
    p = p * r + np.float32(1.0)
    p = p * r + np.float32(1.0)
    biased = np.float32(kf + np.float32(127.0 + _MAGIC32)).view(np.int32) - np.int32(_MAGIC32_BITS)
    return p * np.int32(biased << 23).view(np.float32)


@nb.njit(inline="always", fastmath=True)
def _min_dist64(gram, nyi, nx, i):
    """Smallest ``max(nyi + nx[j] - 2 gram[i, j], 0)`` of a float64 row.

    The minimum is taken over the IEEE bit patterns as integers (monotonic for
    non-negative floats): LLVM vectorises an integer min reduction, but not a
    floating-point one, which made this scan cost as much as the exponentials.
    """
    best = np.int64(0x7FF0000000000000)  # +inf
    for j in range(gram.shape[1]):
        d = max(nyi + nx[j] - 2.0 * gram[i, j], 0.0)
        b = np.float64(d).view(np.int64)
        best = b if b < best else best
    return np.int64(best).view(np.float64)


@nb.njit(inline="always", fastmath=True)
def _min_dist32(gram, nyi, nx, i):
    """float32 twin of :func:`_min_dist64`."""
    two = np.float32(2.0)
    zero = np.float32(0.0)
    best = np.int32(0x7F800000)  # +inf
    for j in range(gram.shape[1]):
        d = max(nyi + nx[j] - two * gram[i, j], zero)
        b = np.float32(d).view(np.int32)
        best = b if b < best else best
    return np.int32(best).view(np.float32)


@nb.njit(inline="always", fastmath=True)
def _nearest(gram, ny, nx, yb, xb, inv2h2, dmin, ssum, i, two, best):
    """Update row i's running state with ``best``, its smallest squared distance here.

    ``gram[i]`` holds ``y_i . x_j``; squared distances are ``ny + nx - 2 gram`` (in
    the block's dtype: ``two`` carries it). ``dmin[i]`` is the smallest squared
    distance seen so far and ``ssum[i, h]`` the kernel sum scaled by
    ``exp(dmin[i] * inv2h2[h])`` (the largest term is 1). A near-duplicate nearest
    pair is recomputed exactly from the stored vectors. Returns ``(ref, approx,
    exact)``: the row reference ``dmin[i]``, the nearest pair's expanded and exact
    squared distances.
    """
    nyi = ny[i]
    zero = nyi - nyi
    exact = np.float64(best)
    if best <= _NEAR_DUPLICATE * nyi:
        # |y|^2 + |x|^2 - 2 y.x cancels for (near-)duplicates: recompute that pair exactly
        arg = 0
        for j in range(gram.shape[1]):
            d = nyi + nx[j] - two * gram[i, j]
            if max(d, zero) == best:
                arg = j
                break
        exact = 0.0
        for c in range(yb.shape[1]):
            diff = np.float64(yb[i, c]) - np.float64(xb[arg, c])
            exact += diff * diff
    low = min(np.float64(best), exact)
    if low < dmin[i]:
        for h in range(inv2h2.shape[0]):
            ssum[i, h] *= math.exp(-(dmin[i] - low) * inv2h2[h])  # exp(-inf) = 0 at start
        dmin[i] = low
    return dmin[i], np.float64(best), exact


def _fold_block64(gram, ny, nx, yb, xb, inv2h2, dmin, ssum):
    """Fold one float64 block of ``yb . xb^T`` into the running sums of its rows."""
    two = 2.0
    for i in range(gram.shape[0]):
        best = _min_dist64(gram, ny[i], nx, i)
        ref, approx, exact = _nearest(gram, ny, nx, yb, xb, inv2h2, dmin, ssum, i, two, best)
        nyi = ny[i]
        for h in range(inv2h2.shape[0]):
            a = inv2h2[h]
            acc = 0.0
            for j in range(gram.shape[1]):
                d = nyi + nx[j] - two * gram[i, j]
                t = -(max(d, 0.0) - ref) * a
                acc += _exp_neg64(max(t, _T_MIN))
            # swap the expanded nearest term for the exact one
            acc += math.exp(-(exact - ref) * a) - _exp_neg64(max(-(approx - ref) * a, _T_MIN))
            ssum[i, h] += acc


def _fold_block32(gram, ny, nx, yb, xb, inv2h2, dmin, ssum):
    """float32 twin of :func:`_fold_block64` (float32 distances and exponentials)."""
    two = np.float32(2.0)
    zero = np.float32(0.0)
    t_min = np.float32(_T_MIN)
    for i in range(gram.shape[0]):
        best = _min_dist32(gram, ny[i], nx, i)
        ref, approx, exact = _nearest(gram, ny, nx, yb, xb, inv2h2, dmin, ssum, i, two, best)
        ref32 = np.float32(ref)
        nyi = ny[i]
        for h in range(inv2h2.shape[0]):
            a = inv2h2[h]
            a32 = np.float32(a)
            acc = np.float32(0.0)  # at most block_cols terms <= 1: float32 is enough
            for j in range(gram.shape[1]):
                d = nyi + nx[j] - two * gram[i, j]
                t = -(max(d, zero) - ref32) * a32
                acc += _exp_neg32(max(t, t_min))
            fix = math.exp(-(exact - ref) * a) - _exp_neg32(
                max(np.float32(-(approx - ref) * a), t_min)
            )
            ssum[i, h] += np.float64(acc) + fix


_BLAS = None


def _blas_controller() -> ThreadpoolController:
    """One threadpoolctl controller per process (building one scans the loaded libraries)."""
    global _BLAS
    if _BLAS is None:
        _BLAS = ThreadpoolController()
    return _BLAS


#: compiled folds; they release the GIL so row blocks run concurrently in Python threads
_FOLDS = {
    np.float64: nb.njit(fastmath=True, cache=True, nogil=True)(_fold_block64),
    np.float32: nb.njit(fastmath=True, cache=True, nogil=True)(_fold_block32),
}


def _resolve_dtype(y, x, precision):
    if precision is None:
        return np.float32 if (y.dtype == np.float32 and x.dtype == np.float32) else np.float64
    if precision in ("float32", np.float32):
        return np.float32
    if precision in ("float64", np.float64):
        return np.float64
    raise QuestsError(f"precision must be 'float32' or 'float64', got {precision!r}")


#: squared-distance noise times 1/(2h^2) beyond which a kernel term can vanish in
#: exp() (e^-700): the nearest term of a row may then cancel and dH become infinite
_NOISE_LIMIT = 700.0
#: beyond this many such rows the pairwise check is skipped and the input refused
_MAX_FAR_ROWS = 2000


def _check_resolution(x: np.ndarray, nx: np.ndarray, inv2h2: np.ndarray, dt) -> None:
    """Refuse references that the ``|y|^2 + |x|^2 - 2 y.x`` expansion cannot resolve.

    A row ``R`` away from the reference mean has squared distances known to about
    ``4 eps R^2``. When that noise exceeds ``_NOISE_LIMIT * 2h^2`` for two rows that
    are closer to each other than ten times it (the descriptors near 1e15 of
    overlapping atoms, which also drag the mean away from every other row), a
    row's nearest term can cancel and its dH become infinite. A lone far outlier is
    harmless: all its neighbours are far too. Ordinary descriptors (R < 10) are
    10^8 times below the limit in float32 at h = 0.005; the check costs one
    partial sort of ``nx`` unless two rows are that far out.
    """
    if len(nx) < 2 or len(inv2h2) == 0:
        return
    scale = 4.0 * float(np.finfo(dt).eps) * float(np.max(inv2h2))
    if float(np.partition(nx, len(nx) - 2)[-2]) * scale <= _NOISE_LIMIT:
        return
    far = np.flatnonzero(nx.astype(np.float64) * scale > _NOISE_LIMIT)
    noise = nx[far].astype(np.float64) * (scale / float(np.max(inv2h2)))
    clash = len(far) > _MAX_FAR_ROWS
    if not clash:
        from scipy.spatial.distance import cdist

        rows = np.asarray(x[far], dtype=np.float64)
        d2 = cdist(rows, rows, "sqeuclidean")
        np.fill_diagonal(d2, np.inf)
        clash = bool(np.any(d2 < 10.0 * (noise[:, None] + noise[None, :])))
    if not clash:
        return
    h = float(np.sqrt(0.5 / np.max(inv2h2)))
    spread = float(nx[far].max())
    in64 = 4.0 * float(np.finfo(np.float64).eps) * float(np.max(inv2h2)) * spread
    hint = (
        "; use precision='float64'"
        if dt == np.float32 and in64 <= _NOISE_LIMIT
        else " (overlapping atoms give descriptor entries near 1e15)"
    )
    raise QuestsError(
        f"reference descriptors: {len(far)} rows lie up to {np.sqrt(spread):.3g} from the "
        f"mean, where {np.dtype(dt).name} squared distances are only known to "
        f"±{float(noise.max()):.3g}, far more than 2h² = {2 * h * h:.3g} (h = {h:g}), and "
        f"some of them are that close together: the kernel sums would be noise{hint}"
    )


def _row_block(i0, i1, y, xc, nx, mu, inv2h2, dt, bc, same):
    """log kernel sums of rows ``i0:i1`` against every reference column block."""
    yc = xc[i0:i1] if same else (y[i0:i1] - mu).astype(dt)
    ny = np.einsum("ij,ij->i", yc, yc, dtype=np.float64).astype(dt)
    dmin = np.full(i1 - i0, np.inf)
    ssum = np.zeros((i1 - i0, len(inv2h2)))
    gram_buf = np.empty((i1 - i0) * min(bc, len(xc)), dtype=dt)
    fold = _FOLDS[dt]
    for j0 in range(0, len(xc), bc):
        j1 = min(j0 + bc, len(xc))
        gram = gram_buf[: (i1 - i0) * (j1 - j0)].reshape(i1 - i0, j1 - j0)
        np.matmul(yc, xc[j0:j1].T, out=gram)  # contiguous out: BLAS writes in place
        fold(gram, ny, nx[j0:j1], yc, xc[j0:j1], inv2h2, dmin, ssum)
    return np.log(ssum) - dmin[:, None] * inv2h2[None, :]


def log_kernel_sums(
    y: np.ndarray,
    x: np.ndarray,
    h: np.ndarray,
    *,
    precision=None,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    block_cols: int = DEFAULT_BLOCK_COLS,
    progress=None,
    cancel=None,
    n_workers: int | None = None,
) -> np.ndarray:
    """``log sum_j K(y_i, x_j)`` for every row of ``y`` and every bandwidth in ``h``.

    Inputs are assumed validated (2-D, finite, same width; ``h`` 1-D positive).
    Returns a float64 array of shape ``(len(y), len(h))``.

    Row blocks are spread over ``n_workers`` Python threads (default: the Numba
    thread count, which :func:`quests_core.thread_limit` sets), each running a
    single-threaded GEMM and a GIL-free Numba fold; BLAS is kept single-threaded
    meanwhile, so no two thread pools compete for the cores.
    """
    dt = _resolve_dtype(y, x, precision)
    inv2h2 = 1.0 / (2.0 * np.asarray(h, dtype=np.float64) ** 2)
    mu = x.mean(axis=0, dtype=np.float64)
    same = y is x
    xc = (x - mu).astype(dt)
    nx = np.einsum("ij,ij->i", xc, xc, dtype=np.float64).astype(dt)
    _check_resolution(x, nx, inv2h2, dt)
    m = y.shape[0]
    out = np.empty((m, len(inv2h2)))
    br = max(1, min(int(block_rows), m))
    bc = max(1, int(block_cols))
    starts = list(range(0, m, br))
    workers = max(1, min(int(n_workers or nb.get_num_threads()), len(starts)))
    done = [0]
    lock = threading.Lock()

    def task(i0):
        if cancel is not None and cancel.is_set():
            raise Cancelled("computation cancelled")
        i1 = min(i0 + br, m)
        out[i0:i1] = _row_block(i0, i1, y, xc, nx, mu, inv2h2, dt, bc, same)
        if progress is not None:
            with lock:
                done[0] += i1 - i0
                progress(done[0], m)

    with _blas_controller().limit(limits=1, user_api="blas"):
        if workers == 1:
            for i0 in starts:
                task(i0)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(task, i0) for i0 in starts]
                try:
                    for fut in futures:
                        fut.result()
                except BaseException:
                    for fut in futures:
                        fut.cancel()
                    raise
    return out


def warm_up() -> None:
    """Compile the float64 and float32 folds (or load them from Numba's on-disk cache).

    Runs :func:`log_kernel_sums` on a few rows of each dtype: both the folds and the
    near-duplicate branch take the same array types as on real data, so the first real
    call finds the machine code ready. About 1.5 s on 2 cores when nothing is cached,
    a few milliseconds when the cache holds them.
    """
    x = np.random.default_rng(0).random((8, 5))
    for dt in (np.float64, np.float32):
        xd = x.astype(dt)
        log_kernel_sums(xd, xd, np.array([0.5]), n_workers=1)
        log_kernel_sums(xd[:3], xd, np.array([0.5, 1.0]), n_workers=1)
