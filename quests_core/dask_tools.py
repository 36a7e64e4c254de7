"""The Dask plumbing shared by :mod:`quests_core.chunked` and :mod:`quests_core.distributed`.

* :func:`dask_client`: the given client, one connected to a scheduler address,
  or a :class:`distributed.LocalCluster` started for the call;
* :data:`KERNEL_LOCK`: inside one process one kernel computation runs at a time,
  so threads of a worker never oversubscribe the cores and Numba's workqueue
  threading layer (not thread-safe) is never entered from two threads at once;
* :func:`run_bounded`: tasks submitted with a bounded number in flight;
* :func:`paths_for_workers` and :func:`check_workers_see`: paths sent to workers are
  absolute (a worker's current directory is not ours) and seen by every worker.

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

__all__ = ["KERNEL_LOCK", "SCHEDULER_TIMEOUT_S", "SHARED_FILESYSTEM", "check_workers_see",
           "dask_client", "paths_for_workers", "require_distributed", "run_bounded"]

#: one kernel computation at a time per process (see the module docstring)
KERNEL_LOCK = threading.Lock()
#: seconds to wait for a scheduler given by address
SCHEDULER_TIMEOUT_S = 10
#: tasks kept in flight per worker thread (bounds the memory of numpy inputs)
_IN_FLIGHT_PER_THREAD = 2
#: what a worker that cannot see a path is told to fix
SHARED_FILESYSTEM = ("the Dask workers must see the same filesystem as this machine, "
                     "at the same paths")


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


def paths_for_workers(paths, *, directory: bool = False) -> list[str]:
    """``paths`` as absolute paths for Dask workers, each checked to exist here.

    A worker runs in its own current directory (wherever ``dask worker`` was started),
    so a relative path would name another file there, or none. ``~`` is expanded and
    ``..`` normalised; symlinks are kept (they lead to the same place on a shared
    filesystem). Raises a one-line :class:`QuestsError` for a path that is not an
    existing file (a directory with ``directory=True``) on this machine.
    """
    out = []
    for p in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        full = os.path.abspath(os.path.expanduser(os.fspath(p)))
        if directory and not os.path.isdir(full):
            raise QuestsError("directory not found", source=str(p))
        if not directory and not os.path.isfile(full):
            raise QuestsError("file not found", source=str(p))
        out.append(full)
    return out


def _missing_here(files: list[str], dirs: list[str], probes: list[str]) -> list[str]:
    """The paths this process cannot see (runs on every worker)."""
    return ([f for f in files if not os.path.isfile(f)]
            + [d for d in dirs if not os.path.isdir(d)]
            + [f for f in probes if not os.path.exists(f)])


def _existing_ancestor(path: str) -> str:
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def check_workers_see(client, files=(), writes=()) -> None:
    """Check that every worker of ``client`` sees ``files`` and can reach ``writes``.

    Parameters
    ----------
    client : distributed.Client
    files : sequence of str
        Absolute paths of files the tasks read (:func:`paths_for_workers`).
    writes : sequence of str
        Absolute paths of directories the tasks write into (a chunk store), existing or
        not: a hidden probe file is written into each (or into its nearest existing
        parent) for a moment and every worker must see it, so a worker with a folder of
        the same name on its own disk is caught too.

    Raises
    ------
    QuestsError
        One line naming a worker, the first path it cannot see and
        :data:`SHARED_FILESYSTEM`. Workers that join later are not checked.
    """
    import uuid

    probes = []
    try:
        for folder in writes:
            probe = os.path.join(_existing_ancestor(str(folder)),
                                 f".quests-worker-probe-{uuid.uuid4().hex}")
            try:
                with open(probe, "x"):
                    pass
            except OSError:
                continue  # not writable here: writing the store says so itself
            probes.append(probe)
        dirs = [_existing_ancestor(str(d)) for d in writes]
        try:
            missing = client.run(_missing_here, list(files), dirs, probes)
        except Exception as exc:  # noqa: BLE001 - e.g. workers without quests_core
            text = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise QuestsError(f"cannot ask the Dask workers which files they see ({text})"
                              ) from None
    finally:
        for probe in probes:
            with contextlib.suppress(OSError):
                os.remove(probe)
    for worker, lost in sorted(missing.items()):
        if lost:
            path = lost[0]
            if path in probes:
                path = os.path.dirname(path)
                what = "does not see this machine's folder"
            else:
                what = "cannot find"
            more = f" (and {len(lost) - 1} more)" if len(lost) > 1 else ""
            raise QuestsError(f"Dask worker {worker} {what} {path}{more}: {SHARED_FILESYSTEM}")

