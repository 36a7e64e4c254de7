"""Atomic file writes and the removal of writers' leftovers: the one implementation.

Every file the package writes (cache entries, chunk-store parts and manifests,
exported tables and structures) is first written to a temporary file in the
same directory and then renamed over its final name with :func:`os.replace`,
so a reader sees either the old file or the complete new one, never half a
file.

Invariants
----------
- A temporary file is named ``<prefix><name>.<host tag>-<pid>.<random>.tmp``
  (:func:`temp_prefix`), so a later process can tell a dead writer's leftover
  from the file of a live writer (:func:`is_stale_temp`).
- :func:`remove_stale_temp_files` never removes the file of a live writer on
  this machine, whatever its age, and never raises.
- :func:`fsync_replace` flushes the data to disk before the rename, so a crash
  after the rename cannot leave an entry with missing bytes.

Memory: nothing here holds file contents beyond what the caller passes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from quests_core.errors import QuestsError

__all__ = [
    "STALE_TEMP_SECONDS",
    "atomic_path",
    "fsync_replace",
    "is_stale_temp",
    "remove_stale_temp_files",
    "temp_path",
    "temp_prefix",
    "write_json_atomic",
]

log = logging.getLogger(__name__)

#: A temporary file not modified for this long (seconds) whose writer cannot be
#: checked (another machine, or a name without a writer) is a leftover.
STALE_TEMP_SECONDS = 600.0
#: ``<name>.<host tag>-<pid>.<random>.tmp``: the writer of a temporary file.
_WRITER = re.compile(r"\.(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]+)\.[A-Za-z0-9_]+\.tmp$")
_HOST_TAG: str | None = None


def _host_tag() -> str:
    """Eight hex digits naming this machine, boot and PID namespace: a process id in a
    temporary file's name is only checked where this tag matches."""
    global _HOST_TAG
    if _HOST_TAG is None:
        import hashlib
        import socket

        parts = [socket.gethostname()]
        for probe in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
            try:
                parts.append(Path(probe).read_text().strip() if "boot" in probe
                             else str(os.stat(probe).st_ino))
            except OSError:
                parts.append("")
        _HOST_TAG = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]
    return _HOST_TAG


def temp_prefix(name: str) -> str:
    """The prefix of a temporary file written for ``name`` by this process: ``name``,
    this machine's tag and this process id (see :func:`remove_stale_temp_files`)."""
    return f"{name}.{_host_tag()}-{os.getpid()}."


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":  # pragma: no cover - os.kill(pid, 0) would end it on Windows
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: alive, another user's
        return True
    return True


def is_stale_temp(path: str | os.PathLike, grace: float = STALE_TEMP_SECONDS,
                  now: float | None = None) -> bool:
    """Whether the temporary file ``path`` (``*.tmp``) is a writer's leftover.

    Stale: its name says it was written by a process of this machine that has
    ended, or it was not modified for ``grace`` seconds and its writer cannot be
    checked (another machine, or an older name without the writer). A file of a
    live writer on this machine is never stale, however old.
    """
    path = Path(path)
    if not path.name.endswith(".tmp"):
        return False
    match = _WRITER.search(path.name)
    if match and match["host"] == _host_tag():
        return not _pid_alive(int(match["pid"]))
    try:
        mtime = path.lstat().st_mtime
    except OSError:
        return False
    return (time.time() if now is None else now) - mtime > grace


def remove_stale_temp_files(folder: str | os.PathLike, grace: float = STALE_TEMP_SECONDS,
                            match: Callable[[str], bool] | None = None) -> list[Path]:
    """Delete the stale temporary files (``*.tmp``, see :func:`is_stale_temp`) directly in
    ``folder``, keeping those of live writers; returns the removed paths.

    ``match(name)`` restricts which names count as this folder's temporary files.
    Never raises: an unreadable folder or a file that cannot be removed is skipped.
    """
    removed: list[Path] = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not name.endswith(".tmp") or (match is not None and not match(name)):
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
        except OSError:
            continue
        path = Path(entry.path)
        if not is_stale_temp(path, grace, now):
            continue
        try:
            path.unlink()
        except OSError as exc:
            log.info("could not remove the leftover temporary file %s (%s)", path, exc)
            continue
        removed.append(path)
    if removed:
        log.info("removed %d leftover temporary file(s) in %s", len(removed), folder)
    return removed


def temp_path(final: Path, hidden: bool = False) -> Path:
    """A new empty temporary file next to ``final``, named after it and its writer
    (``[.]<name>.<host>-<pid>.<random>.tmp``); the caller renames or removes it."""
    prefix = temp_prefix(f".{final.name}" if hidden else final.name)
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=final.parent)
    os.close(fd)
    return Path(name)


def fsync_replace(tmp: Path, final: Path) -> None:
    """Flush ``tmp`` to disk and rename it over ``final``."""
    with open(tmp, "rb+") as fd:
        os.fsync(fd.fileno())
    os.replace(tmp, final)


def write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    """Write ``payload`` as indented JSON to ``path`` atomically (fsync, then rename)."""
    tmp = temp_path(path)
    try:
        tmp.write_text(json.dumps(payload, indent=1, default=str))
        fsync_replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it over ``path`` on success.

    The temporary file is ``.<name>.<host>-<pid>.<random>.tmp``: a later open of the
    folder can tell a dead writer's leftover (see :func:`remove_stale_temp_files`).
    On an exception the temporary file is removed and ``path`` is left as it was.

    Raises
    ------
    QuestsError
        When ``path`` is a directory, its folder does not exist, or it cannot be written.
    """
    final = Path(path)
    if final.is_dir():
        raise QuestsError("is a directory, expected an output file name", source=str(path))
    parent = final.parent if str(final.parent) else Path(".")
    if not parent.is_dir():
        raise QuestsError("output directory does not exist", source=str(path))
    try:
        tmp = temp_path(parent / final.name, hidden=True)
    except OSError as exc:
        raise QuestsError(f"cannot write ({exc.strerror})", source=str(path)) from None
    try:
        yield tmp
        os.replace(tmp, final)
    except OSError as exc:
        raise QuestsError(f"cannot write ({exc.strerror or exc})", source=str(path)) from None
    finally:
        tmp.unlink(missing_ok=True)
