"""Thread control for the Numba kernels and the BLAS calls of the kernel sums."""

from __future__ import annotations

import contextlib

import numba
from threadpoolctl import threadpool_limits

from .errors import QuestsError


def set_num_threads(n: int) -> None:
    """Use ``n`` threads in Numba kernels and BLAS from now on (process-wide)."""
    n = _check(n)
    numba.set_num_threads(n)
    threadpool_limits(limits=n, user_api="blas")


def get_num_threads() -> int:
    return numba.get_num_threads()


def _check(n) -> int:
    top = numba.config.NUMBA_NUM_THREADS
    try:
        ok = not isinstance(n, bool) and float(n).is_integer() and 1 <= int(float(n)) <= top
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise QuestsError(f"threads must be an integer between 1 and {top}, got {repr(n)[:60]}")
    return int(float(n))


@contextlib.contextmanager
def thread_limit(n: int | None):
    """Limit Numba and BLAS threads inside the block (``None``: leave as is)."""
    if n is None:
        yield
        return
    n = _check(n)
    old = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        with threadpool_limits(limits=n, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(old)
