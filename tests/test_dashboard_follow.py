"""The dashboard's follow mode (dashboard.follow.FollowSession) without a browser.

A writer process (tests/test_follow.py) appends the frames of the bundled
failed run, some flushed in two parts cut mid-line. The session's per-frame
table must equal the offline :func:`quests_core.trajectory.frame_statistics`
of the same frames (same reference, same seed), its first flagged frame the
offline rule's (:func:`quests_core.watch.first_flag`), every frame computed and
streamed once, and stopping must leave no thread.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from bokeh.models import ColumnDataSource
from test_follow import FAILED, start_writer

import quests_core as qc
from dashboard import follow as follow_mod
from dashboard.follow import FollowSession, followable_files
from dashboard.state import AppState
from quests_core.io import iter_frames
from quests_core.trajectory import frame_statistics
from quests_core.watch import first_flag

ROOT = Path(__file__).resolve().parents[1]
SOLID = ROOT / "sample_data" / "cu_solid_400K.extxyz"
COLUMNS = ("n_atoms", "mean_dH", "max_dH", "frac_novel", "H")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """The descriptor cache in the test's directory."""
    monkeypatch.setenv("QUESTS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def offline():
    """Per-frame numbers of the complete failed run against the solid (h = 0.015)."""
    xr = qc.descriptors([f.atoms for f in iter_frames(SOLID)])
    rows = []
    for f in iter_frames(FAILED):
        stats, _ = frame_statistics(qc.descriptors([f.atoms]), xr, 0.015, seed=(0, f.frame))
        rows.append([getattr(stats, c) for c in COLUMNS])
    return np.array(rows, dtype=np.float64)


def follow_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("follow ")]


def session_on(folder: Path, reference: bool = True) -> FollowSession:
    state = AppState(data_dir=str(folder))
    if reference:
        state.add_file(str(folder / SOLID.name), SOLID.name, role="reference")
    return FollowSession(state=state, interval=0.02)


def drain_until(session: FollowSession, done, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not done():
        session.drain()
        assert time.monotonic() < end, f"timed out: {session.status}"
        time.sleep(0.02)
    session.drain()


def test_follow_session_equals_the_offline_run(tmp_path, offline, monkeypatch):
    shutil.copy(SOLID, tmp_path / SOLID.name)
    run = tmp_path / "run_failed.extxyz"
    run.touch()
    calls: list[int] = []
    real = follow_mod.frame_report

    def counting(atoms, reference, rule, frame, **kw):
        calls.append(frame)
        return real(atoms, reference, rule, frame, **kw)

    monkeypatch.setattr(follow_mod, "frame_report", counting)
    session = session_on(tmp_path)
    assert followable_files(str(tmp_path)) == [SOLID.name, run.name]
    streamed: list[int] = []
    real_stream = ColumnDataSource.stream

    def stream(source, data, *args, **kw):
        if source.name == "follow-frames":
            streamed.append(len(data["frame"]))
        return real_stream(source, data, *args, **kw)

    monkeypatch.setattr(ColumnDataSource, "stream", stream)
    session.start(run.name)
    assert session.running and session.alive
    writer = start_writer(FAILED, run, tmp_path, pace=0.05)
    try:
        drain_until(session, lambda: session.n_frames == 35)
    finally:
        assert writer.wait(timeout=120) == 0
    assert session.status.startswith(f"following {run.name}: 35 frames, last at t = ")
    session.stop()
    assert not session.alive and not follow_threads() and not session.running
    assert session.status == f"stopped (35 frames of {run.name})"

    table = session.table()
    assert table["frame"].tolist() == list(range(35))
    assert calls == list(range(35))  # each frame computed once
    assert sum(streamed) == 35 and max(streamed) < 35  # streamed as it came, once each
    assert np.array_equal(table["n_atoms"].to_numpy(), offline[:, 0])
    np.testing.assert_allclose(table[list(COLUMNS[1:])].to_numpy(), offline[:, 1:],
                               rtol=1e-12, atol=1e-12)
    expected = first_flag(offline[:, 3])
    assert expected == 19
    assert session.first_flag == expected
    assert table.loc[table["flagged"], "frame"].iat[0] == expected
    assert session.xcol == "time"
    src = session.frames_source.data
    assert src["frame"] == list(range(35)) and src["x"] == table["time"].tolist()
    flags = session.flags_source.data
    assert flags["frame"][0] == expected and flags["novel_run"][0] == 2

    # the rule's controls re-evaluate the stored fractions, nothing is recomputed
    session.patience = 4
    assert session.first_flag == first_flag(offline[:, 3], patience=4)
    session.novel_fraction = 0.5
    assert session.first_flag == first_flag(offline[:, 3], 0.5, 4)
    assert calls == list(range(35))


def test_first_frame_is_the_reference_without_reference_files(tmp_path):
    run = tmp_path / "run.extxyz"
    frames = list(iter_frames(FAILED, index=":4"))
    run.write_bytes(b"".join(_frame_bytes(FAILED, i) for i in range(4)))
    session = session_on(tmp_path, reference=False)
    session.start(run.name)
    drain_until(session, lambda: session.n_frames == 4)
    session.stop()
    assert not follow_threads()
    x0 = qc.descriptors([frames[0].atoms])
    got = session.table()
    for f, (_, row) in zip(frames, got.iterrows(), strict=True):
        stats, _ = frame_statistics(qc.descriptors([f.atoms]), x0, 0.015, seed=(0, f.frame))
        for c in COLUMNS[1:]:
            assert row[c] == pytest.approx(getattr(stats, c), rel=1e-12, abs=1e-12)
    assert got["frac_novel"].iat[0] == 0.0  # frame 0 against itself
    assert session.reference_text == f"reference: frame 0 of {run.name}, 864 atoms; h = 0.015 1/Å"


def test_volume_rule_bandwidth_of_the_data_tab(tmp_path):
    """The Data tab's volume rule: h from the reference files' volume per atom, used for
    the frame's H and dH alike (as the offline ``trajectory``, docs/spec.md section 6)."""
    from quests_core.dataset import Dataset
    from quests_core.settings import frames_bandwidth

    shutil.copy(SOLID, tmp_path / SOLID.name)
    run = tmp_path / "run.extxyz"
    run.write_bytes(_frame_bytes(FAILED, 30))
    session = session_on(tmp_path)
    session.state.settings.bandwidth_mode = "volume rule"
    session.start(run.name)
    drain_until(session, lambda: session.n_frames == 1 or not session.running, 60)
    session.stop()
    h = frames_bandwidth(Dataset.from_files(str(SOLID)).frames)
    assert session.bandwidth == pytest.approx(h, rel=1e-12) and abs(h - 0.015) > 1e-4
    assert session.reference_text.startswith(f"reference: {SOLID.name}, 8640 atoms; h = ")
    frame = next(iter_frames(FAILED, index="30:31")).atoms
    xr = qc.descriptors([f.atoms for f in iter_frames(SOLID)])
    stats, _ = frame_statistics(qc.descriptors([frame]), xr, h, seed=(0, 0))
    row = session.table().iloc[0]
    for c in COLUMNS[1:]:
        assert row[c] == pytest.approx(getattr(stats, c), rel=1e-12, abs=1e-12)


def _frame_bytes(path: Path, index: int) -> bytes:
    data = path.read_bytes()
    pos = 0
    for i in range(index + 1):
        start = pos
        n = int(data[pos : data.index(b"\n", pos)].split()[0])
        for _ in range(n + 2):
            pos = data.index(b"\n", pos) + 1
        if i == index:
            return data[start:pos]
    raise AssertionError


def test_a_bad_frame_stops_the_follow_with_one_line(tmp_path):
    run = tmp_path / "run.extxyz"
    good = _frame_bytes(FAILED, 0)
    bad = (b"2\nLattice=\"5 0 0 0 5 0 0 0 5\" Properties=species:S:1:pos:R:3 pbc=\"T T T\"\n"
           b"Cu 0.0 0.0 0.0\nCu nan 1.5 1.5\n")
    run.write_bytes(good + bad)
    session = session_on(tmp_path, reference=False)
    session.start(run.name)
    drain_until(session, lambda: not session.running)
    assert not session.alive and not follow_threads()
    assert session.n_frames == 1
    assert "frame 1" in session.status and "\n" not in session.status
    assert run.name in session.status
    session.stop()  # idempotent: the error stays shown
    assert "frame 1" in session.status


def test_stop_while_waiting_leaves_no_thread(tmp_path):
    run = tmp_path / "run.extxyz"
    run.touch()
    session = session_on(tmp_path, reference=False)
    session.start(run.name)
    drain_until(session, lambda: session.status.endswith("0 frames, waiting"), 20)
    assert session.alive and session.status == f"following {run.name}: 0 frames, waiting"
    t0 = time.monotonic()
    session.stop()
    assert time.monotonic() - t0 < 2.0
    assert not follow_threads() and session.status == f"stopped (0 frames of {run.name})"
    # the Stop button does not wait: the thread ends and drain() says so
    session.start(run.name)
    drain_until(session, lambda: session.status.endswith("waiting"), 20)
    session.stop(wait=False)
    drain_until(session, lambda: not session.running, 5)
    assert session.status == f"stopped (0 frames of {run.name})"
    session._thread.join(2)
    assert not follow_threads()


def _row(i: int, frac: float) -> dict:
    return {"frame": i, "time": 0.2 * i, "n_atoms": 864, "H": 4.0, "H_stderr": 0.0,
            "mean_dH": -4.0 + i * 1e-4, "max_dH": 9.0, "frac_novel": frac, "seconds": 0.1,
            "computed_at": 0.0}


def test_work_per_new_frame_does_not_grow(tmp_path, monkeypatch):
    """Draining one new frame does the same work after 100 frames as after 20,000: one row
    streamed into each source (never a whole column again), the rule fed one fraction,
    and the sources keep Python lists, which Bokeh's ``stream`` extends in place. Work
    is counted, not timed (the machines are shared)."""
    from quests_core.watch import NoveltyRule

    session = session_on(tmp_path, reference=False)
    session.running = True
    streamed: list[tuple[str, set[int]]] = []
    fed: list[float] = []
    stream, update = ColumnDataSource.stream, NoveltyRule.update

    def counting_stream(self, new_data, rollover=None, **kw):
        streamed.append((self.name, {len(v) for v in new_data.values()}))
        return stream(self, new_data, rollover, **kw)

    def counting_update(self, fraction):
        fed.append(fraction)
        return update(self, fraction)

    monkeypatch.setattr(ColumnDataSource, "stream", counting_stream)
    monkeypatch.setattr(NoveltyRule, "update", counting_update)

    def work_of_one_frame(i: int) -> tuple[list, int]:
        streamed.clear()
        fed.clear()
        session._queue.put(("row", _row(i, 0.5)))  # every frame flagged: the worst case
        assert session.drain() == 1
        return list(streamed), len(fed)

    for i in range(100):
        session._queue.put(("row", _row(i, 0.5)))
    session.drain()
    early = work_of_one_frame(100)
    for i in range(101, 20_000):
        session._queue.put(("row", _row(i, 0.5)))
    session.drain()
    late = work_of_one_frame(20_000)
    assert early == late == ([("follow-frames", {1}), ("follow-flags", {1})], 1)
    assert session.n_frames == 20_001 and len(session.flags_source.data["frame"]) == 20_000
    for source in (session.frames_source, session.flags_source):
        assert all(isinstance(v, list) for v in source.data.values())


def test_follow_panel_draws_the_session_sources(tmp_path):
    """The view's figures draw the session's sources; axis labels follow the x column and
    the dH scale; the threshold line follows the rule."""
    from dashboard.views.trajectory import FollowPanel

    session = session_on(tmp_path, reference=False)
    view = FollowPanel(session)
    sources = {r.data_source.name for f in view.figures.values() for r in f.renderers}
    assert sources == {"follow-frames", "follow-flags"}
    assert view.table.source is session.flags_source
    session.running = True
    session._queue.put(("row", _row(0, 0.0)))
    session.drain()
    assert {f.xaxis[0].axis_label for f in view.figures.values()} == {"time (ps)"}
    assert view.figures["mean_dH"].yaxis[0].axis_label == "mean dH (nats, asinh)"
    assert session.frames_source.data["t_mean_dH"] == [pytest.approx(np.arcsinh(-4.0))]
    session.state.dh_scale = "linear"
    assert view.figures["mean_dH"].yaxis[0].axis_label == "mean dH (nats)"
    assert session.frames_source.data["t_mean_dH"] == [-4.0]
    session.novel_fraction = 0.2
    assert view.threshold.location == 0.2
    assert view.stop_button.disabled is False and view.start_button.disabled is True
    session.running = False
    assert view.stop_button.disabled is True


def test_closing_the_session_stops_the_follow(tmp_path):
    """DashboardApp.cleanup (pn.state.on_session_destroyed) leaves no follow thread."""
    from dashboard.app import create_app

    run = tmp_path / "run_failed.extxyz"
    run.write_bytes(_frame_bytes(FAILED, 0))
    app = create_app(str(tmp_path), job_mode="thread")
    follow = app.trajectory.follow
    assert follow.path == run.name  # the Data tab's trajectory
    follow.start()
    drain_until(follow, lambda: follow.n_frames == 1, 60)
    assert follow_threads()
    app.cleanup()
    assert not follow_threads() and not follow.running


def test_a_rewritten_file_starts_the_table_again(tmp_path):
    """The file truncated and written again (a new run): the table restarts from frame 0."""
    run = tmp_path / "run.extxyz"
    run.write_bytes(b"".join(_frame_bytes(FAILED, i) for i in range(3)))
    session = session_on(tmp_path, reference=False)
    session.start(run.name)
    drain_until(session, lambda: session.n_frames == 3, 60)
    with open(run, "wb") as fd:  # truncated in place, then two frames of the new run
        fd.write(b"".join(_frame_bytes(FAILED, i) for i in (5, 6)))
    drain_until(session, lambda: session.n_frames == 2 and session.table()["frame"].tolist()
                == [0, 1] and session.status.startswith("following"), 60)
    session.stop()
    assert session.frames_source.data["frame"] == [0, 1]
    assert not follow_threads()
