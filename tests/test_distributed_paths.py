"""Paths typed relative to our directory reach Dask workers started elsewhere.

A real cluster: ``dask scheduler`` and one ``dask worker`` as separate processes, both
started in another directory (a temporary folder). ``quests-dashboard dh RUN -r REF
--store S --scheduler tcp://...`` with relative paths, run from the repository root,
gives the per-atom dH of the in-memory run, writes the store where we asked (not into
the workers' directory), and a worker that cannot see a file is one line saying the
workers must see the same filesystem.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import stop_process_group

from quests_core import QuestsError
from quests_core.chunk_store import ChunkStore

distributed = pytest.importorskip("distributed")

from quests_core.dask_tools import (  # noqa: E402
    SHARED_FILESYSTEM,
    check_workers_see,
    paths_for_workers,
)

ROOT = Path(__file__).resolve().parents[1]
RUN = "sample_data/cu_failed_simulation.extxyz"
REF = "sample_data/cu_solid_400K.extxyz"
#: a small, quick selection: 6 frames of 864 atoms against one reference frame
SELECT = ["--index", "0:6", "--reference-index", "0", "--no-progress"]

pytestmark = pytest.mark.skipif(not (ROOT / RUN).exists() or not (ROOT / REF).exists(),
                                reason="sample data missing")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler and a worker (1 process, 1 thread) started in another directory;
    yields ``(address, the workers' directory)``."""
    where = tmp_path_factory.mktemp("elsewhere")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path_factory.mktemp("cluster-logs")
    procs = []
    try:
        with open(logs / "scheduler.log", "w") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                 "--port", str(port), "--no-dashboard"],
                cwd=where, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            assert procs[0].poll() is None, (logs / "scheduler.log").read_text()[-2000:]
            time.sleep(0.2)
        with open(logs / "worker.log", "w") as log:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "1",
                 "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"],
                cwd=where, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
        with distributed.Client(address, timeout=30) as client:
            client.wait_for_workers(1, timeout=90)
        yield address, where
    finally:
        for proc in reversed(procs):
            stop_process_group(proc)


def _cli(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "quests_core.cli", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_relative_paths_on_a_cluster_started_elsewhere_equal_the_in_memory_run(
        cluster, tmp_path):
    address, elsewhere = cluster
    before = sorted(p.name for p in elsewhere.iterdir())
    store = os.path.relpath(tmp_path / "S", ROOT)  # relative, as typed
    assert not Path(store).is_absolute()
    done = _cli("dh", RUN, "-r", REF, *SELECT, "--chunk-frames", "2", "--store", store,
                "--scheduler", address)
    assert done.returncode == 0, done.stderr
    memory = tmp_path / "memory.parquet"
    done = _cli("dh", RUN, "-r", REF, *SELECT, "-o", memory)
    assert done.returncode == 0, done.stderr

    expected = pd.read_parquet(memory)["dH"].to_numpy()
    result = ChunkStore(tmp_path / "S")
    assert result.complete and len(result.chunk_ids) == 3
    got = result.delta_entropy()
    assert got.shape == expected.shape == (6 * 864,)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # the workers wrote into our store, nothing into their own directory
    assert sorted(p.name for p in elsewhere.iterdir()) == before
    assert not [p for p in (tmp_path).iterdir() if p.name.startswith(".quests-worker-probe")]


def test_a_worker_that_cannot_see_a_file_is_one_line(cluster, tmp_path):
    address, _ = cluster
    with distributed.Client(address, timeout=30) as client:
        check_workers_see(client, [str(ROOT / RUN)], writes=[str(tmp_path / "new" / "S")])
        lost = str(tmp_path / "only-here.extxyz")  # as a worker without our disk sees it
        with pytest.raises(QuestsError) as err:
            check_workers_see(client, [str(ROOT / RUN), lost])
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("Dask worker tcp://127.0.0.1:") and f"cannot find {lost}" in text
    assert text.endswith(SHARED_FILESYSTEM)
    assert "the Dask workers must see the same filesystem" in text
    assert not list(tmp_path.glob(".quests-worker-probe-*"))  # the probe was removed

    # a file missing here is refused before anything is submitted, naming it as typed
    done = _cli("dh", "sample_data/nope.extxyz", "-r", REF, *SELECT, "--store",
                os.path.relpath(tmp_path / "S2", ROOT), "--scheduler", address)
    assert done.returncode == 1
    assert done.stderr.strip() == "error: sample_data/nope.extxyz: file not found"
    assert not (tmp_path / "S2").exists()


def test_paths_for_workers(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert paths_for_workers(RUN) == [str(ROOT / RUN)]
    assert paths_for_workers([f"sample_data/../{REF}"]) == [str(ROOT / REF)]
    assert paths_for_workers("sample_data", directory=True) == [str(ROOT / "sample_data")]
    with pytest.raises(QuestsError, match="^sample_data/missing.xyz: file not found$"):
        paths_for_workers(["sample_data/missing.xyz"])
    with pytest.raises(QuestsError, match="directory not found"):
        paths_for_workers(RUN, directory=True)
