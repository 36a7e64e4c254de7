"""Warm kernels, honest progress and reaped worker processes.

* The Numba kernels are cached on disk and the warm-up compiles exactly the
  signatures a real computation uses (so the first Compute does not compile).
* The server's kernel warm-up process holds jobs back until it has finished,
  then is reaped.
* Progress moves inside the long steps (overlap, learning curves, nucleation),
  in proportion to their cost, and never backwards.
* No job leaves a ``<defunct>`` worker process behind, whether it finished,
  was cancelled or crashed (20 jobs in worker processes).
"""

from __future__ import annotations

import importlib
import multiprocessing as mp
import os
import threading
import time
from pathlib import Path

import numba
import numpy as np
import pytest
from numba.core.caching import NullCache

import dashboard.compute as compute
import dashboard.kernel_warmup as kernel_warmup
import dashboard.warm as warm
from dashboard.compute import Progress
from dashboard.jobs import ComputeJob
from dashboard.pipeline import run_pipeline
from dashboard.state import ComputeSettings
from quests_core.errors import Cancelled
from quests_core.learning import learning_sizes

TINY = ComputeSettings(learning_max_n=50, learning_repeats=1, overlap_max_n=50).frozen()
CORE_MODULES = ("quests_core.kernels", "quests_core.descriptors", "quests_core.neighbors",
                "quests_core.approximate", "quests_core.learning")


pytestmark = pytest.mark.usefixtures("private_cache")


def _crash_task(files, settings, report, cancel, n_threads):
    """A job task whose worker process dies without a word."""
    report(0.5, "about to crash")
    os._exit(3)


def _sleep_task(files, settings, report, cancel, n_threads):
    """A job task that runs until it is cancelled (at most 60 s)."""
    end = time.monotonic() + 60
    while time.monotonic() < end:
        if cancel.is_set():
            raise Cancelled("cancelled")
        report(0.1, "sleeping")
        time.sleep(0.05)
    return None


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process from /proc, None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'
    state, ppid = stat.rsplit(")", 1)[1].split()[:2]
    return state, int(ppid)


def child_state(pid: int) -> str | None:
    """State letter of this process's child ``pid`` ("Z": zombie), None once it is gone."""
    stat = _stat(pid)
    return stat[0] if stat is not None and stat[1] == os.getpid() else None


def _slow_task(files, settings, report, cancel, n_threads):
    """A job task that says nothing for 2.5 s, then returns its files' names."""
    time.sleep(2.5)
    return [f.name for f in files]


def zombie_children() -> list[int]:
    """Process ids of this process's children in the zombie state (Linux /proc)."""
    pids = [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit()]
    return [pid for pid in pids if child_state(pid) == "Z"]


def dispatchers(module) -> list:
    return [obj for obj in vars(module).values()
            if isinstance(obj, numba.core.registry.CPUDispatcher)]


# ----------------------------------------------------------------------------- kernels


def test_every_numba_kernel_is_cached_on_disk():
    """cache=True on every jitted function that Python calls (inlined helpers are compiled
    into their callers, whose cache holds them)."""
    kernels = importlib.import_module("quests_core.kernels")
    found = []
    for name in CORE_MODULES:
        module = importlib.import_module(name)
        for d in dispatchers(module):
            if d.targetoptions.get("inline") == "always":
                continue
            found.append(d.py_func.__qualname__)
            assert not isinstance(d._cache, NullCache), f"{name}.{d.py_func.__name__}"
    for fold in kernels._FOLDS.values():
        assert not isinstance(fold._cache, NullCache)
        found.append(fold.py_func.__qualname__)
    assert {"_descriptor_kernel", "_ghost_cloud", "_bin_cloud", "_scan_cells",
            "_fold_block64", "_fold_block32"} <= set(found)


def test_warm_up_compiles_the_signatures_real_data_use(cu_noisy):
    """After the warm-up, descriptors and dH of real structures (float64 and float32,
    periodic and not) compile nothing new: the first Compute only loads machine code."""
    import quests_core as qc

    approximate, descriptors, kernels, neighbors = (
        importlib.import_module(f"quests_core.{name}")
        for name in ("approximate", "descriptors", "kernels", "neighbors"))
    seconds = warm.warm_kernels()
    assert set(seconds) == set(warm.KERNEL_MODULES)
    watched = [descriptors._descriptor_kernel, neighbors._ghost_cloud, neighbors._bin_cloud,
               approximate._scan_cells, *kernels._FOLDS.values()]
    before = [list(d.signatures) for d in watched]
    assert all(before), "the warm-up left a kernel uncompiled"

    molecule = cu_noisy[:20].copy()
    molecule.pbc = False
    x = qc.descriptors([cu_noisy, molecule])
    y = qc.descriptors(cu_noisy[:30], dtype=np.float32)
    dh = qc.delta_entropy(x[:200], x, 0.015)
    dh32 = qc.delta_entropy(y, y, 0.015, precision="float32")
    ha = qc.approx_delta_entropy(x[:50], x, 0.015, n_neighbors=3)
    assert [list(d.signatures) for d in watched] == before
    # the computations above were real ones
    assert x.shape == (len(cu_noisy) + 20, 63) and np.all(np.isfinite(dh))
    assert np.all(dh32 <= 0) and np.all(ha >= dh[:50] - 1e-9)


@pytest.fixture
def fresh_warm_state(monkeypatch):
    """The kernel warm-up bookkeeping (dashboard.kernel_warmup) as in a fresh server."""
    monkeypatch.setattr(kernel_warmup, "_KERNELS", {"process": None, "started": None,
                                                    "seconds": None, "exitcode": None})
    monkeypatch.setattr(kernel_warmup, "_KERNELS_DONE", threading.Event())


def test_kernel_warm_up_process_holds_jobs_back_then_is_reaped(specs, fresh_warm_state):
    assert warm.kernels_ready() and warm.kernels_waited() == 0.0
    assert warm.start_kernel_warm_up() is True
    assert warm.start_kernel_warm_up() is False  # once per process
    proc = kernel_warmup._KERNELS["process"]
    files = specs(("solid.extxyz", "reference", "0:2"))
    job = ComputeJob(files, TINY, mode="thread")
    if not warm.kernels_ready():  # still importing and compiling (seconds)
        assert job.try_start() is False
        assert job.state == "queued" and job.text.startswith("Compiling the numerical kernels")
    assert warm.wait_kernels(120)
    info = warm.kernel_warm_up_info()
    assert info["exitcode"] == 0 and info["seconds"] > 0
    assert proc.exitcode == 0 and proc.pid not in zombie_children()
    job.run_sync(120)
    assert job.state == "done", job.error
    assert len(job.result.atoms) == 2 * 108


# ----------------------------------------------------------------------------- progress


def test_plan_splits_in_proportion():
    np.testing.assert_allclose(Progress.plan([1.0, 3.0], 0.2, 1.0), [(0.2, 0.4), (0.4, 1.0)])
    np.testing.assert_allclose(Progress.plan([0.0, 0.0]), [(0.0, 0.5), (0.5, 1.0)])
    spans = Progress.plan([5.0, 0.0, 2.0])
    assert spans[1][0] == spans[1][1] and spans[-1][1] == 1.0


def test_progress_moves_inside_long_steps_in_proportion_to_cost(specs, monkeypatch):
    """Descriptor structures, overlap pairs, learning-curve subsets and nucleation frames
    move the bar; the bar never goes back and ends at 1."""
    # no descriptor cache: an earlier test of the session may have computed these very
    # files (same synthetic content), and a cache hit moves the bar in one step
    monkeypatch.setattr(compute, "_CACHE", False)
    files = specs(("solid.extxyz", "reference", ":"), ("melt.extxyz", "test", ":"),
                  ("failed_traj.extxyz", "trajectory", ":"),
                  ("solid.extxyz", "solid reference", ":"))
    files[-1].name = "solid again"
    settings = TINY.replace(learning_max_n=1296, learning_repeats=2, overlap_max_n=600)
    seen: list[tuple[float, str]] = []
    res = run_pipeline(files, settings, progress=lambda f, t: seen.append((f, t)))
    fractions = np.array([f for f, _ in seen])
    assert np.all(np.diff(fractions) >= -1e-12) and fractions[-1] == pytest.approx(1.0)

    def during(prefix):
        return np.array([f for f, t in seen if t.startswith(prefix)])

    # descriptors: the bar moves after every structure (12 frames of 108 atoms)
    assert len(np.unique(during("Descriptors of failed_traj.extxyz"))) >= 12
    # 4 files of >= 432 atoms: 16 pairs, each of several 256-row blocks
    overlap = during("Overlap by file")
    assert len(res.overlap["file"].names) == 4
    assert len(np.unique(overlap)) > 2 * 16
    # learning curves: the bar follows the cost of each subset (n^2 kernel terms plus the
    # fixed cost of a call), not the count: the small half of the subsets is less than
    # half the stage
    learning = [f for f, t in seen if t.startswith("Learning curve of failed_traj.extxyz")]
    lo, hi = learning[0], learning[-1]
    sizes = learning_sizes(1296, 1296)
    n_half = (len(sizes) // 2) * 2  # subsets done after half the sizes (2 repeats each)
    share = (learning[n_half] - lo) / (hi - lo)
    cost = sizes**2.0 + Progress.CALL / Progress.KERNEL_PER_PAIR
    want = np.sum(cost[: len(sizes) // 2]) / np.sum(cost)
    assert share == pytest.approx(want, abs=0.01) and share < 0.35
    # nucleation: dH against the solid, then one step per frame of the trajectory
    assert len(np.unique(during("Solid-like clusters of failed_traj.extxyz"))) >= 12
    assert res.nucleation is not None and len(res.nucleation.largest) == 12


# ----------------------------------------------------------------------------- processes


def test_no_defunct_worker_after_20_jobs(specs):
    """20 short jobs in worker processes (finished, cancelled, crashed): every worker is
    reaped, none stays <defunct>."""
    files = specs(("solid.extxyz", "reference", "0:1"))
    jobs = []
    states = []
    for i in range(20):
        if i % 10 == 3:  # crashes
            job = ComputeJob(files, TINY, mode="process", task=_crash_task)
        elif i % 10 == 6:  # cancelled while running
            job = ComputeJob(files, TINY, mode="process", task=_sleep_task)
        else:
            job = ComputeJob(files, TINY, mode="process")
        assert job.try_start() and job.state == "running"
        if job.task is _sleep_task:
            end = time.monotonic() + 60
            while job.text != "sleeping" and time.monotonic() < end:
                job.poll(0.1)
            job.cancel()
        job.run_sync(timeout=120)
        states.append(job.state)
        jobs.append(job)
    assert states.count("done") == 16 and states.count("cancelled") == 2
    assert states.count("error") == 2
    assert all("exit code 3" in j.error for j in jobs if j.state == "error")
    assert all(len(j.result.atoms) == 108 for j in jobs if j.state == "done")

    # A worker may still be shutting down for a moment after its job has finished. Wait
    # (reading /proc only: Process.exitcode, is_alive() or active_children() would reap
    # the children themselves) until every worker has exited, then give the reapers a
    # moment: an exited worker nobody joins stays a zombie for good.
    pids = [j._worker.pid for j in jobs]
    end = time.monotonic() + 30
    while any(child_state(p) not in (None, "Z") for p in pids) and time.monotonic() < end:
        time.sleep(0.1)
    end = time.monotonic() + 5
    while zombie_children() and time.monotonic() < end:
        time.sleep(0.1)
    assert zombie_children() == []
    assert all(child_state(p) is None for p in pids)
    assert [j._worker.exitcode for j in jobs if j.state == "error"] == [3, 3]
    assert all(j._worker.exitcode is not None for j in jobs)
    assert [p for p in mp.active_children() if p.name == "quests-dashboard-job"] == []


def test_standby_worker_takes_the_next_job(specs, tmp_path, monkeypatch):
    """With a standby worker (what the server keeps), a process job starts in a worker
    started ahead, with the server's environment of the moment; a new standby follows
    every job, a dead one is skipped, and stopping leaves no process behind."""
    files = specs(("solid.extxyz", "reference", "0:1"))
    reference = run_pipeline(files, TINY)
    workers = []
    assert ComputeJob.wait_standby(1) is False  # none yet
    ComputeJob.prepare_standby()
    try:
        assert ComputeJob.wait_standby(120)  # imports done, kernels loaded
        first = ComputeJob._standby[0]
        monkeypatch.setenv("QUESTS_CACHE_DIR", str(tmp_path / "later"))
        job = ComputeJob(files, TINY, mode="process")
        assert job.try_start() and job._worker is first
        job.run_sync(120)
        assert job.state == "done", job.error
        np.testing.assert_allclose(job.result.atoms["dH"], reference.atoms["dH"], rtol=1e-6)
        assert [p.suffix for p in (tmp_path / "later").rglob("*.npy")]  # the job's cache dir
        second = ComputeJob._standby[0]
        assert second is not first
        job2 = ComputeJob(files, TINY, mode="process")
        assert job2.try_start() and job2._worker is second
        job2.run_sync(120)
        assert job2.state == "done"
        np.testing.assert_array_equal(job2.result.atoms["dH"], job.result.atoms["dH"])
        third = ComputeJob._standby[0]
        third.kill()
        third.join(10)
        job3 = ComputeJob(files, TINY, mode="process")
        assert job3.try_start() and job3._worker not in (first, second, third)
        job3.run_sync(120)
        assert job3.state == "done", job3.error
        workers = [first, second, third, job3._worker, ComputeJob._standby[0]]
    finally:
        ComputeJob.stop_standby()
    assert ComputeJob._standby is None and not ComputeJob._standby_enabled
    pids = [w.pid for w in workers]
    end = time.monotonic() + 30
    while any(child_state(p) is not None for p in pids) and time.monotonic() < end:
        time.sleep(0.1)
    assert [child_state(p) for p in pids] == [None] * 5
    assert zombie_children() == []


def test_a_starting_worker_counts_the_seconds(specs):
    """Until the worker's first message the status is not a silent "Starting": it counts
    the seconds; the result is delivered and the worker reaped."""
    files = specs(("solid.extxyz", "reference", "0:1"))
    job = ComputeJob(files, TINY, mode="process", task=_slow_task)
    assert job.try_start() and job.text == "Starting"
    texts = []
    end = time.monotonic() + 120
    while not job.finished and time.monotonic() < end:
        job.poll(0.2)
        texts.append(job.text)
    assert job.state == "done" and job.result == ["solid.extxyz"]
    counted = [t for t in texts if t.startswith("Starting the worker process (")]
    assert counted and counted[-1] != counted[0]  # at least two different second counts
    job._worker.join(30)
    assert job._worker.exitcode == 0


def _names_task(files, settings, report, cancel, n_threads):
    """A job task that reports half-way, waits 0.6 s, then returns its files' names and a
    setting."""
    report(0.5, "half-way")
    time.sleep(0.6)
    return [f.name for f in files], settings.core.k


def test_job_runner_lifecycle(specs):
    """The one lifecycle of the views: running/progress/status while it runs, on_finish
    once with running back to False, one job at a time, cancel."""
    from dashboard.jobs import JobRunner
    from quests_core.errors import QuestsError

    files = specs(("solid.extxyz", "reference", "0:1"))
    finished, seen = [], []
    runner = JobRunner(_names_task, on_finish=lambda job: finished.append(
        (job.state, job.result, runner.running, runner.progress)))
    runner.param.watch(lambda e: seen.append((e.name, e.new)), ["running", "progress", "status"])
    job = runner.run_sync(files, TINY, mode="thread", timeout=60)
    assert job.state == "done" and finished == [("done", (["solid.extxyz"], 32), False, 100)]
    assert ("running", True) in seen and seen[-2:] == [("running", False), ("progress", 100)]
    assert ("status", "half-way (50%)") in seen
    # one job at a time; cancelling a job before it starts
    job = runner.start(files, TINY, mode="thread")
    with pytest.raises(QuestsError, match="already running"):
        runner.start(files, TINY, mode="thread")
    assert runner.cancel("Stopping") and runner.status == "Stopping"
    assert runner.drive_sync(job, timeout=60).state == "cancelled"
    assert finished[-1] == ("cancelled", None, False, 0) and not runner.cancel()


def test_time_left_arithmetic():
    """elapsed (1 - f) / f once 2 s and 5% of the bar have passed; words in whole seconds,
    5 s steps, then minutes and hours."""
    assert compute.time_left(4.0, 0.25) == pytest.approx(12.0)
    assert compute.time_left(10.0, 0.8) == pytest.approx(2.5)
    assert compute.time_left(3.0, 0.05) == pytest.approx(57.0)
    # not yet meaningful, or finished
    assert compute.time_left(1.9, 0.5) is None
    assert compute.time_left(30.0, 0.049) is None
    assert compute.time_left(30.0, 1.0) is None
    assert compute.time_left(float("nan"), 0.5) is None
    assert [compute.format_time_left(s) for s in (0.2, 7.4, 12.0, 57.0, 89.0, 95.0, 1800.0,
                                                  3725.0, None)] == [
        "about 1 s left", "about 7 s left", "about 10 s left", "about 55 s left",
        "about 90 s left", "about 2 min left", "about 30 min left", "about 1 h 2 min left", ""]


def _quarter_task(files, settings, report, cancel, n_threads):
    """A job task that reports a quarter done, works 2.4 s, then half done, 0.3 s more."""
    report(0.25, "working")
    time.sleep(2.4)
    report(0.5, "working")
    time.sleep(0.3)
    return "ok"


def test_job_runner_status_carries_the_time_left(specs):
    """The one JobRunner (Data, Stores, analysis tabs) says the time left once it means
    something, with or without the percentage."""
    from dashboard.jobs import JobRunner

    files = specs(("solid.extxyz", "reference", "0:1"))
    for show_percent, expected in ((True, "working (25%, about 8 s left)"),
                                   (False, "working (about 8 s left)")):
        runner = JobRunner(_quarter_task, show_percent=show_percent)
        job = runner.start(files, TINY, mode="thread")
        assert job.try_start()
        while job._working_since is None:  # the task's first report
            job.poll(0.1)
        t0 = job._working_since
        assert runner.status_text(job, now=t0 + 1.0) == (
            "working (25%)" if show_percent else "working")  # under 2 s: no estimate
        assert runner.status_text(job, now=t0 + 2.8) == expected  # 2.8 s x 0.75 / 0.25
        seen = []
        runner.param.watch(lambda e, seen=seen: seen.append(e.new), "status")
        assert runner.drive_sync(job, timeout=60).state == "done"
        # measured: 0.5 done after about 2.4 s -> about 2 s left
        assert any(s.startswith("working (") and s.endswith(" s left)") for s in seen), seen
