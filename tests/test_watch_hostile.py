"""``quests-dashboard watch`` on hostile files: nothing lost, nothing left unsaid.

One test per case of the issue: a named pipe (must be refused, never opened:
opening a pipe blocks), a directory or device, a followed file deleted,
replaced by a directory or by another file while watched, an absurd atom
count followed by valid frames (xyz and LAMMPS), an in-place rewrite far
before the read position, a LAMMPS frame whose declared count is named as
its own, and a file created after the watch started (read from frame 0).

The file is changed at exact points of the watch, not after sleeps: the
command runs in this process with ``sys.stdout``/``sys.stderr`` replaced by a
:class:`Tap` that calls an action when a given line is written (the row of a
frame, the "waiting for the file" message). The follower looks at the file
again only after the row was written, so every change is seen at the next
poll. No test asserts a wall-clock time; the ``--timeout`` values only bound
a regression (a watch that would wait forever fails instead).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from test_follow import FAILED, frame_offsets
from test_watch import SOLID, _lammps_dump

import quests_core.follow as follow_module
from quests_core.cli import main as cli_main
from quests_core.follow import MAX_FRAME_ATOMS, Follower, _PrefixDigest
from quests_core.io import iter_frames
from quests_core.watch import EXIT_FILE_GONE, EXIT_OK

DATA = FAILED.read_bytes()
OFFSETS = frame_offsets(FAILED) + [len(DATA)]


def frames(a: int, b: int) -> bytes:
    """The bytes of frames ``a`` to ``b - 1`` of the bundled failed run."""
    return DATA[OFFSETS[a] : OFFSETS[b]]


def with_count(k: int, count: bytes, stop: int = 6) -> bytes:
    """Frames 0 .. ``stop - 1`` of the failed run, frame ``k``'s count line replaced."""
    data = frames(0, stop)
    start = OFFSETS[k]
    return data[:start] + count + data[data.index(b"\n", start) :]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One descriptor cache for the module: the reference is computed once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def cache_dir(cache, monkeypatch):
    monkeypatch.setenv("QUESTS_CACHE_DIR", str(cache))


class Tap(io.StringIO):
    """A text stream that runs ``action`` once, when a written line starts with ``prefix``."""

    def __init__(self, prefix: str | None = None, action: Callable[[], None] | None = None):
        super().__init__()
        self.prefix, self.action = prefix, action

    def write(self, text: str) -> int:
        n = super().write(text)
        if self.action is not None and self.prefix is not None:
            lines = self.getvalue().splitlines()
            if any(ln.lstrip().startswith(self.prefix) for ln in lines):
                action, self.action = self.action, None
                action()
        return n


def watch(monkeypatch, argv: list[str], out: Tap | None = None,
          err: Tap | None = None) -> tuple[int, list[str], list[str]]:
    """``quests-dashboard watch ARGV...`` in this process: (status, stdout lines, stderr lines)."""
    out, err = out or Tap(), err or Tap()
    with monkeypatch.context() as m:
        m.setattr(sys, "stdout", out)
        m.setattr(sys, "stderr", err)
        status = cli_main(["watch", *argv, "-r", str(SOLID), "--interval", "0.02",
                           "--no-progress"])
    return status, out.getvalue().splitlines(), err.getvalue().splitlines()


def rows(lines: list[str]) -> list[int]:
    """The frame numbers of the printed rows (under the header)."""
    return [int(ln.split()[0]) for ln in lines[1:] if ln.strip()]


def row_of(frame: int) -> str:
    """How the printed row of ``frame`` (864 atoms) starts, stripped."""
    return f"{frame} {864:>7}"


# ----------------------------------------------------------------------------
# Not a regular file
# ----------------------------------------------------------------------------


def test_named_pipe_is_refused_without_being_opened(tmp_path):
    """Opening a pipe blocks until a writer comes: the command must not open it."""
    fifo = tmp_path / "run.extxyz"
    os.mkfifo(fifo)
    proc = subprocess.run(
        [sys.executable, "-m", "quests_core.cli", "watch", str(fifo), "-r", str(SOLID),
         "--timeout", "1", "--no-progress"],
        capture_output=True, text=True, timeout=120,  # a regression fails, never hangs
        env={**os.environ, "QUESTS_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert proc.returncode == 1, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert err == [f"error: {fifo}: not a regular file (a named pipe): only a regular file "
                   "that a simulation appends can be followed"]
    # without an extension the format detection must not open it either
    bare = tmp_path / "run"
    os.mkfifo(bare)
    proc = subprocess.run(
        [sys.executable, "-m", "quests_core.cli", "watch", str(bare), "-r", str(SOLID),
         "--no-progress"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "QUESTS_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert proc.returncode == 1 and "not a regular file (a named pipe)" in proc.stderr


def test_directory_and_device_are_refused(tmp_path, monkeypatch):
    folder = tmp_path / "run.extxyz"
    folder.mkdir()
    status, out, err = watch(monkeypatch, [str(folder), "--timeout", "30"])
    assert status == 1 and out == []
    assert err == [f"error: {folder}: not a regular file (a directory): only a regular file "
                   "that a simulation appends can be followed"]
    status, _, err = watch(monkeypatch, ["/dev/null", "--format", "xyz", "--timeout", "30"])
    assert status == 1
    assert err[-1].startswith("error: /dev/null: not a regular file (a character device)")


# ----------------------------------------------------------------------------
# The followed file goes away
# ----------------------------------------------------------------------------


def test_deleted_file_ends_with_status_5(tmp_path, monkeypatch):
    run = tmp_path / "run.extxyz"
    run.write_bytes(frames(0, 2))
    out = Tap(row_of(1), run.unlink)
    status, lines, err = watch(monkeypatch, [str(run), "--from-start", "--timeout", "30"], out)
    assert status == EXIT_FILE_GONE == 5
    assert rows(lines) == [0, 1]
    assert err[-1] == (f"error: {run}: the followed file was deleted while it was followed, "
                       f"after frame 1 (frames count from 0), {OFFSETS[2]} bytes read; "
                       "watch ends after 2 frame(s); no extrapolation")


def test_file_replaced_by_a_directory_ends_with_status_5(tmp_path, monkeypatch):
    run = tmp_path / "run.extxyz"
    run.write_bytes(frames(0, 2))

    def to_directory():
        run.unlink()
        run.mkdir()

    status, lines, err = watch(monkeypatch, [str(run), "--from-start", "--timeout", "30"],
                               Tap(row_of(1), to_directory))
    assert status == EXIT_FILE_GONE
    assert rows(lines) == [0, 1]
    assert err[-1].startswith(f"error: {run}: the followed file was replaced by a directory "
                              "while it was followed, after frame 1 (frames count from 0)")
    assert not any("internal error" in ln for ln in err)


def test_file_replaced_by_another_file_ends_with_status_5(tmp_path, monkeypatch):
    run = tmp_path / "run.extxyz"
    run.write_bytes(frames(0, 2))

    def replace():
        new = tmp_path / "new.extxyz"
        new.write_bytes(frames(0, 3))
        os.replace(new, run)

    status, lines, err = watch(monkeypatch, [str(run), "--from-start", "--timeout", "30"],
                               Tap(row_of(1), replace))
    assert status == EXIT_FILE_GONE
    assert rows(lines) == [0, 1]
    assert err[-1].startswith(f"error: {run}: the followed file was replaced by another file "
                              "(a new inode) while it was followed, after frame 1")


def test_on_replace_restart_follows_the_new_file_from_frame_0(tmp_path, monkeypatch):
    run = tmp_path / "run.extxyz"
    run.write_bytes(frames(0, 2))
    csv = tmp_path / "w.csv"

    def replace():
        new = tmp_path / "new.extxyz"
        new.write_bytes(frames(0, 3))
        os.replace(new, run)

    status, lines, err = watch(
        monkeypatch, [str(run), "--from-start", "--on-replace", "restart", "--timeout", "0.5",
                      "-o", str(csv)], Tap(row_of(1), replace))
    assert status == EXIT_OK
    assert rows(lines) == [0, 1, 0, 1, 2]
    assert [ln.split(",")[10] for ln in csv.read_text().splitlines()[1:]] == [
        "0", "0", "1", "1", "1"]  # the restarts column
    assert sum("was replaced by a new file; following it again" in ln for ln in err) == 1


# ----------------------------------------------------------------------------
# Absurd atom counts
# ----------------------------------------------------------------------------


def test_count_bomb_is_an_error_naming_the_frame(tmp_path, monkeypatch):
    """`999999999999` in frame 2's count line: an error, not 3 swallowed frames and status 0."""
    run = tmp_path / "run.extxyz"
    run.write_bytes(with_count(2, b"999999999999"))
    status, lines, err = watch(monkeypatch, [str(run), "--from-start", "--timeout", "30"])
    assert status == 1
    assert rows(lines) == [0, 1]
    assert err[-1] == (f"error: {run}: frame 2: header declares 999999999999 atoms, more than "
                       f"the {MAX_FRAME_ATOMS:,} a followed frame may hold: a corrupt atom count")


def test_count_above_the_lines_written_is_an_error_once_the_next_frame_arrives(
        tmp_path, monkeypatch):
    """A plausible count (100000) but the next frame's count line comes first: an error."""
    run = tmp_path / "run.extxyz"
    run.write_bytes(with_count(2, b"100000"))
    status, lines, err = watch(monkeypatch, [str(run), "--from-start", "--timeout", "30"])
    assert status == 1
    assert rows(lines) == [0, 1]
    assert err[-1] == (f"error: {run}: frame 2: header declares 100000 atoms, found 864 atom "
                       "lines and then '864', the count line of a next frame (a corrupt count "
                       "or a frame cut short)")


def test_lammps_message_names_the_frames_own_declared_count(tmp_path, monkeypatch):
    """Frame 1 declares 900 atoms and has 864: the message says 900 (not frame 0's 864)."""
    dump = _lammps_dump([f.atoms for f in iter_frames(FAILED, index="0:3")])
    marker = "ITEM: NUMBER OF ATOMS\n864\n"
    first = dump.index(marker)
    second = dump.index(marker, first + 1)
    dump = dump[:second] + "ITEM: NUMBER OF ATOMS\n900\n" + dump[second + len(marker) :]
    run = tmp_path / "run.lammpstrj"
    run.write_text(dump)
    status, lines, err = watch(monkeypatch, [str(run), "--from-start", "--type-map", "Cu",
                                             "--timeout", "30"])
    assert status == 1
    assert rows(lines) == [0]
    assert err[-1] == (f"error: {run}: frame 1: truncated or corrupt LAMMPS dump: header "
                       "declares 900 atoms, found 864 (then 'ITEM: TIMESTEP')")
    # the offline reader says the same about the finished file
    from quests_core.errors import QuestsError

    with pytest.raises(QuestsError, match="header declares 900 atoms, found 864"):
        list(iter_frames(run, type_map="Cu"))


# ----------------------------------------------------------------------------
# In-place rewrites
# ----------------------------------------------------------------------------


def test_rewrite_far_before_the_read_position_restarts(tmp_path, monkeypatch):
    """A byte of frame 0 changes (tens of kB before the read position): a restart."""
    run = tmp_path / "run.extxyz"
    run.write_bytes(frames(0, 2))
    at = DATA.index(b"\n", DATA.index(b"\n") + 1) + 5  # in frame 0's first atom line
    assert OFFSETS[2] - at > 10_000

    def rewrite():
        with open(run, "r+b") as fd:
            fd.seek(at)
            old = fd.read(1)
            fd.seek(at)
            fd.write(b"7" if old != b"7" else b"8")

    csv = tmp_path / "w.csv"
    status, lines, err = watch(
        monkeypatch, [str(run), "--from-start", "--timeout", "0.5", "-o", str(csv)],
        Tap(row_of(1), rewrite))
    assert status == EXIT_OK
    assert rows(lines) == [0, 1, 0, 1]
    restarts = [ln for ln in err if "following it again from the start" in ln]
    assert restarts == [f"{run}: the file was rewritten (bytes 0-{OFFSETS[2] - 1} of those "
                        "already read changed); following it again from the start (frame "
                        "numbers from 0)"]


def test_prefix_digest_covers_every_block_within_its_budget(tmp_path, monkeypatch):
    """Count the work: with a budget of one block per poll, a change anywhere is found
    within as many polls as there are blocks; the last bytes are compared at every poll."""
    data = bytes(range(256)) * 4  # 1024 bytes: 64 blocks of 16
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    digest = _PrefixDigest(block=16)
    digest.update(data[:500])  # as the follower reads: blocks of any size
    digest.update(data[500:])
    reads: list[int] = []
    read_at = follow_module._read_at
    monkeypatch.setattr(follow_module, "_read_at",
                        lambda fd, n, at: (reads.append(n), read_at(fd, n, at))[1])
    with open(path, "r+b", buffering=0) as fd:
        assert digest.changed(fd, budget=16) is None
        assert reads == [64, 16]  # the anchor, then one block
        for k, expected in ((3, (48, 64)), (40, (640, 656)), (63, (960, 1024))):
            fd.seek(16 * k + 5)
            fd.write(b"\xff")
            polls = 1
            while (found := digest.changed(fd, budget=16)) is None:
                polls += 1
            assert found == expected and polls <= 64
            fd.seek(16 * k + 5)
            fd.write(data[16 * k + 5 : 16 * k + 6])
        assert all(digest.changed(fd, budget=16) is None for _ in range(64))
        reads.clear()
        assert digest.changed(fd, budget=10**9) is None
        assert sum(reads) == 64 + 1024  # a budget above the size: all of it at each poll


# ----------------------------------------------------------------------------
# A file that appears after the watch started
# ----------------------------------------------------------------------------


def test_file_created_after_the_start_is_read_from_frame_0(tmp_path, monkeypatch):
    """Without --from-start, a file that did not exist when the watch started is all new."""
    run = tmp_path / "later.extxyz"
    err = Tap(f"{run}: waiting for the file to appear", lambda: run.write_bytes(frames(0, 2)))
    status, lines, messages = watch(monkeypatch, [str(run), "--timeout", "0.5"], err=err)
    assert status == EXIT_OK
    assert rows(lines) == [0, 1]
    assert any("waiting for the file to appear" in ln for ln in messages)


def test_follower_from_the_end_of_a_file_created_later(tmp_path):
    """The same at the follower's level, driven frame by frame."""
    run = tmp_path / "later.extxyz"
    messages: list[str] = []

    def notify(text: str) -> None:
        messages.append(text)
        if "waiting for the file" in text:
            run.write_bytes(frames(0, 2))

    got = [f.frame for f in Follower(run, interval=0.02, timeout=0.3, from_start=False,
                                     notify=notify)]
    assert got == [0, 1]
