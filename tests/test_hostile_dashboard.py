"""Hostile files and malformed messages through the dashboard's upload path (issue 11).

Every corpus file of :mod:`hostile_files` is uploaded into a session and computed
(thread job mode, tiny files): the upload is either refused or the computation ends,
and either way the page gets one line naming the file; the session keeps working.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from hostile_files import make_corpus

from dashboard.state import AppState
from dashboard.views.data import DataView, upload_problem
from quests_core.errors import QuestsError


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("hostile"))


def _view(tmp_path, max_mb: float = 5.0) -> DataView:
    st = AppState(data_dir=str(tmp_path), upload_dir=str(tmp_path / "up"), max_upload_mb=max_mb)
    return DataView(state=st, job_mode="thread")


def _one_line(text: str) -> bool:
    return bool(text.strip()) and "\n" not in text.strip() and "Traceback" not in text


def test_hostile_corpus_through_the_upload_path(corpus, tmp_path):
    """Upload, then compute each file alone as a trajectory: a refusal or a final status
    in one line naming the file; never an exception out of the view."""
    outcomes = {"refused": 0, "failed": 0, "done": 0}
    unnamed = []
    view = _view(tmp_path)
    st = view.state
    for case in corpus:
        st.files = []
        try:
            view.save_upload(case.path.name, case.path.read_bytes(), role="trajectory")
        except QuestsError as exc:
            assert _one_line(str(exc)) and case.path.name in str(exc), (case.name, str(exc))
            outcomes["refused"] += 1
            continue
        asyncio.run(view.compute())
        status = view.jobs.status
        assert _one_line(status), (case.name, status)
        assert not view.jobs.running
        if status.startswith("Failed: "):
            outcomes["failed"] += 1
            assert case.expected in ("error", "any"), (case.name, status)
            if case.path.name not in status:  # every reader error names the file
                unnamed.append((case.name, case.stage, status))
            assert st.messages[-1][0] == "error" and _one_line(st.messages[-1][1])
        else:
            outcomes["done"] += 1
            assert status.startswith("Done in"), (case.name, status)
            assert case.expected in ("ok", "warning", "any"), (case.name, status)
            notes = [t for level, t in st.messages[-3:] if level == "warning"]
            assert all(_one_line(t) for t in notes), notes
            if case.expected == "warning":  # a cut last frame: skipped, and the page says so
                outcomes["warned"] = outcomes.get("warned", 0) + 1
                assert any(case.path.name in w and "skipped" in w
                           for w in st.results.warnings), (case.name, st.results.warnings)
    assert outcomes["refused"] and outcomes["failed"] and outcomes["done"]
    assert outcomes.get("warned", 0) > 0
    # every failure names the file, the engine's bounds (density, cell) included: the
    # compute step puts the upload's name and the frame in front of "structure i"
    assert unnamed == [], unnamed
    # the session still works: a good file computes
    good = next(c for c in corpus if c.path.name == "extxyz_good.extxyz")
    st.files = []
    view.save_upload("again_good.extxyz", good.path.read_bytes(), role="trajectory")
    asyncio.run(view.compute())
    assert view.jobs.status.startswith("Done in"), view.jobs.status


@pytest.mark.parametrize(
    "filename, content, words",
    [
        (["a.extxyz", "b.extxyz"], [b"1\n\nCu 0 0 0\n"] * 2, "2 files in one message"),
        ("a.extxyz", [b"1\n\nCu 0 0 0\n"], "1 files in one message"),
        ("a.extxyz", None, "content is NoneType"),
        ("a.extxyz", {"x": 1}, "content is dict"),
        ("a.extxyz", "1\n\nCu 0 0 0\n", "content is str"),
        (None, b"1\n\nCu 0 0 0\n", "file name is NoneType"),
        ({"name": "a"}, b"x", "file name is dict"),
        ("a\x00.extxyz", b"x", "NUL byte"),
        ("", b"x", "file name is str"),
    ],
)
def test_malformed_upload_messages_are_refused(tmp_path, filename, content, words):
    view = _view(tmp_path)
    assert words in upload_problem(filename, content)
    with pytest.raises(QuestsError, match=words):
        view.save_upload(filename, content)
    # the same message from the browser: one notification, nothing raised, nothing added
    view.upload.filename = filename if isinstance(filename, (str, list)) else None
    view._on_upload(type("Event", (), {"new": content})())
    assert view.state.files == []
    if content is not None:
        level, text = view.state.messages[-1]
        assert level == "error" and _one_line(text) and "refused" in text


def test_browser_messages_with_folders_or_over_the_cap(tmp_path):
    view = _view(tmp_path, max_mb=0.001)
    st = view.state
    view.upload.filename = "../../etc/evil.extxyz"
    view._on_upload(type("Event", (), {"new": b"1\n\nCu 0 0 0\n"})())
    assert st.files == [] and "without folders" in st.messages[-1][1]
    view.upload.filename = "big.extxyz"
    view._on_upload(type("Event", (), {"new": b"x" * 2000})())
    assert st.messages[-1] == ("error", "big.extxyz: 0.002 MB is over the 0.001 MB upload "
                               "limit (a file larger than the limit belongs in the data "
                               "directory)")
    # the browser refused a file over the cap before sending it: the server says why
    view.upload_guard.refused = json.dumps(["huge.extxyz", 60_200_000, 1])
    assert st.messages[-1][0] == "error"
    assert st.messages[-1][1].startswith("huge.extxyz: 60.2 MB is over the 0.001 MB upload")
    view.upload_guard.refused = "not json"  # ignored, never raised
    view.upload.filename = "ok.extxyz"
    view._on_upload(type("Event", (), {"new": b"1\n\nCu 0 0 0\n"})())
    assert [f.name for f in st.files] == ["upload/ok.extxyz"]
    assert view.upload_guard.max_bytes == 1000
