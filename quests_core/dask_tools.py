"""The Dask plumbing shared by :mod:`quests_core.chunked` and :mod:`quests_core.distributed`.

* :func:`dask_client`: the given client, one connected to a scheduler address,
  or a :class:`distributed.LocalCluster` started for the call;
* :data:`KERNEL_LOCK`: inside one process one kernel computation runs at a time,
  so threads of a worker never oversubscribe the cores and Numba's workqueue
  threading layer (not thread-safe) is never entered from two threads at once;
* :func:`run_bounded`: tasks submitted with a bounded number in flight.

Invariants
----------
- Dask is imported lazily (inside the functions): the rest of ``quests_core``
  works without it. Install it with ``pip install "dask[dataframe]" distributed``.
- A client this module starts is closed when the ``with`` block ends; a given
  client is never closed.
- Memory: at most ``_IN_FLIGHT_PER_THREAD`` tasks per worker thread are in
  flight in :func:`run_bounded`, so numpy inputs sent with the tasks stay bounded.

This module imports no other Dask-using module of the package; chunked and
distributed import it and never each other.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

from .errors import QuestsError

__all__ = ["KERNEL_LOCK", "SCHEDULER_TIMEOUT_S", "dask_client", "require_distributed",
           "run_bounded"]

#: one kernel computation at a time per process (see the module docstring)
KERNEL_LOCK = threading.Lock()
#: seconds to wait for a scheduler given by address
SCHEDULER_TIMEOUT_S = 10
#: tasks kept in flight per worker thread (bounds the memory of numpy inputs)
_IN_FLIGHT_PER_THREAD = 2


def require_distributed():
    """The ``distributed`` module, or a one-line QuestsError saying how to install it."""
    try:
        import dask  # noqa: F401
        import distributed
    except ImportError:
        raise QuestsError(
            'Dask support needs dask and distributed (pip install "dask[dataframe]" distributed)'
        ) from None
    return distributed


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

    Raises
    ------
    QuestsError
        When Dask is missing or the scheduler cannot be reached within
        :data:`SCHEDULER_TIMEOUT_S` seconds.
    """
    distributed = require_distributed()
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


def _n_threads_total(client) -> int:
    try:
        return max(1, sum(client.nthreads().values()))
    except Exception:  # pragma: no cover - scheduler without workers yet
        return 1


def run_bounded(client, submit: Callable[[int], Any], n_tasks: int) -> list:
    """Run ``submit(i)`` for ``i < n_tasks``, a bounded number in flight; results in order.

    On an error (or KeyboardInterrupt) the tasks still running are cancelled.
    """
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
