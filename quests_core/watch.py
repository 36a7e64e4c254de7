"""Watch a running simulation: per-frame dH against a reference, and act when it extrapolates.

The monitor behind ``quests-dashboard watch`` (:mod:`quests_core.cli.watch`,
which parses the options) and :mod:`quests_core.ase_observer`. :func:`watch`
follows a trajectory file that a simulation is still appending
(:class:`quests_core.follow.Follower`), computes for each new frame its
descriptors, its H and the dH of its atoms against reference descriptors
(:func:`frame_report` through :func:`quests_core.trajectory.frame_statistics`),
prints one line per frame and, when the fraction of atoms with dH > 0 stays
above the rule's novel fraction for ``patience`` consecutive frames, acts
(:func:`act`): writes a stop file that the simulation polls (docs/watch.md:
LAMMPS ``fix halt`` on ``is_file()``, ASE :mod:`quests_core.ase_observer`),
runs a command, and returns :data:`EXIT_EXTRAPOLATION`.

The pieces are also used on their own: :class:`NoveltyRule` (the one rule,
also used by the ASE observer and by the tests' offline computation through
:func:`first_flag`), :func:`load_reference` (a reference from files,
structures or descriptors, for Python callers, through the core's loading
service :mod:`quests_core.loading`; the command loads its reference through
:func:`quests_core.cli.loading.load_reference`, its argparse wrapper),
:func:`frame_report`, :func:`stop_line`/:func:`write_stop_file`,
:func:`command_environment`/:func:`run_command`. Nothing here parses options;
``python -m quests_core.watch`` only names the command (exit status 1).

Exit statuses of the ``watch`` command (documented in its help): 0 followed to
the end without extrapolation (:data:`EXIT_OK`), 1 bad input (also a path that
is not a regular file: a named pipe, a directory, a device; a corrupt frame,
e.g. an absurd atom count), 2 usage, 4 extrapolation detected
(:data:`EXIT_EXTRAPOLATION`; not 3, which the CLI keeps for internal errors,
so a script can tell a detected extrapolation from a crash), 5 the followed
file was deleted or replaced (by another file, a directory, ...) while it was
watched (:data:`EXIT_FILE_GONE`; 4 instead when an extrapolation was already
detected, with ``--keep-going``), 130 interrupted. Frame numbers count from 0.

Invariants and memory
---------------------
- The reference descriptors are computed once (through the descriptor cache)
  and kept; each frame's descriptors and dH live only while it is processed:
  memory is O(reference + one frame).
- A frame's numbers equal those of :func:`frame_statistics` on the same frame
  offline (same settings, seed ``(seed, frame)``).
- The actions run at most once per :func:`watch`.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from ase import Atoms

from quests_core.errors import QuestsError
from quests_core.settings import DEFAULTS, Settings
from quests_core.trajectory import FrameStats

__all__ = [
    "DEFAULT_NOVEL_FRACTION",
    "DEFAULT_PATIENCE",
    "EXIT_EXTRAPOLATION",
    "EXIT_FILE_GONE",
    "FrameReport",
    "NoveltyRule",
    "Reference",
    "act",
    "check_destinations",
    "command_environment",
    "first_flag",
    "frame_report",
    "frame_statistics_of",
    "load_reference",
    "run_command",
    "stop_line",
    "watch",
    "write_stop_file",
]

#: Default threshold on the fraction of a frame's atoms with dH > 0 (see docs/watch.md).
DEFAULT_NOVEL_FRACTION = 0.05
#: Default number of consecutive frames above the threshold before acting.
DEFAULT_PATIENCE = 2
#: Return values of :func:`watch` (and exit statuses of the ``watch`` command).
EXIT_OK, EXIT_EXTRAPOLATION = 0, 4
#: Return value of :func:`watch` when the followed file was deleted or replaced while
#: watched (:class:`quests_core.follow.FollowedFileGone`).
EXIT_FILE_GONE = 5
#: Columns of ``--output`` (one row per frame, written as the frames come).
CSV_COLUMNS = ("frame", "offset", "n_atoms", "mean_dH", "max_dH", "frac_novel", "H",
               "H_stderr", "novel_run", "flagged", "restarts", "seconds")


# ----------------------------------------------------------------------------
# The rule
# ----------------------------------------------------------------------------


@dataclass
class NoveltyRule:
    """Extrapolation: more than ``novel_fraction`` of the atoms with dH > 0 in
    ``patience`` consecutive checks.

    ``update(frac)`` feeds one frame and returns True on the frame that
    completes the run (and on each later frame while the run lasts).
    """

    novel_fraction: float = DEFAULT_NOVEL_FRACTION
    patience: int = DEFAULT_PATIENCE
    run: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        f = float(self.novel_fraction)
        if not (0.0 <= f < 1.0):
            raise QuestsError(f"the novel fraction must be in [0, 1), got {self.novel_fraction}")
        p = int(self.patience)
        if p != self.patience or p < 1:
            raise QuestsError(f"the patience must be a positive integer, got {self.patience}")
        self.novel_fraction, self.patience = f, p

    def update(self, frac_novel: float) -> bool:
        """Count one frame; True when the last ``patience`` frames were all novel."""
        self.run = self.run + 1 if frac_novel > self.novel_fraction else 0
        return self.run >= self.patience

    def reset(self) -> None:
        """Forget the frames seen (e.g. after the file was restarted)."""
        self.run = 0


def first_flag(frac_novel: Iterable[float], novel_fraction: float = DEFAULT_NOVEL_FRACTION,
               patience: int = DEFAULT_PATIENCE) -> int | None:
    """Index of the first frame where :class:`NoveltyRule` fires, or None."""
    rule = NoveltyRule(novel_fraction, patience)
    for i, frac in enumerate(frac_novel):
        if rule.update(float(frac)):
            return i
    return None


# ----------------------------------------------------------------------------
# Reference and per-frame numbers
# ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reference:
    """Reference descriptors and the bandwidth of dH.

    Attributes
    ----------
    x : (m, d) array
        Descriptors of the reference atoms.
    h : float
        Bandwidth of dH (``settings.bandwidth``, or the volume rule of the reference).
    description : str
        What the reference is, for messages.
    settings : Settings
        The settings the descriptors were computed with.
    """

    x: np.ndarray
    h: float
    description: str
    settings: Settings


def _compute(settings: Settings):
    import quests_core as qc
    from quests_core.io import locate_error

    def run(structures, k=settings.k, cutoff=settings.cutoff, species=None):
        try:
            return qc.descriptors(structures, k=k, cutoff=cutoff, species=species,
                                  n_threads=settings.threads)
        except QuestsError as exc:
            raise locate_error(exc, structures) from None

    return run


def load_reference(
    reference: Any,
    settings: Settings = DEFAULTS,
    *,
    index: str = ":",
    format: str | None = None,
    type_map: Any = None,
    cache: Any = None,
) -> Reference:
    """Descriptors of a reference, computed once.

    Parameters
    ----------
    reference : path, list of paths, ase.Atoms, list of ase.Atoms or (m, d) array
        Files go through :func:`quests_core.pipeline.file_descriptors` (cached when
        ``cache`` is a :class:`~quests_core.cache.DescriptorCache`); structures
        are computed directly; an array is taken as descriptors (then the
        bandwidth rule must be ``"fixed"``).
    settings : Settings
        k, cutoff, species, bandwidth (rule), threads.
    index, format, type_map
        Frame selection and reader options of the reference files.
    cache : DescriptorCache, optional
        Descriptor cache of the files.

    Raises
    ------
    QuestsError
        For bad files (naming file and frame), empty references, or the volume
        rule without cells.
    """
    from quests_core import loading

    if isinstance(reference, np.ndarray):
        if settings.bandwidth_rule != "fixed":
            raise QuestsError("the volume rule needs reference structures, not descriptors")
        from quests_core.descriptors import descriptor_width

        x = np.asarray(reference, dtype=np.float64)
        width = descriptor_width(settings.k, len(settings.species or ()))
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] != width:
            n_species = len(settings.species or ())
            raise QuestsError(f"reference descriptors must be (m, {width}) for k={settings.k} "
                              f"and {n_species} species, got shape {x.shape}")
        return Reference(x, settings.bandwidth, f"{len(x)} reference descriptors", settings)
    if isinstance(reference, Atoms):
        reference = [reference]
    if isinstance(reference, (str, os.PathLike)):
        reference = [reference]
    items = list(reference)
    if not items:
        raise QuestsError("the reference is empty")
    if all(isinstance(a, Atoms) for a in items):
        from quests_core.dataset import Dataset
        from quests_core.io import validate_atoms

        for i, a in enumerate(items):
            validate_atoms(a, "<reference>", i)
        x = _compute(settings)(items, **settings.descriptor_kwargs())
        structures = loading.Loaded(loading.FileRequest("<reference>", role="reference"),
                                    Dataset.from_structures(items, validate=False),
                                    np.asarray(x, dtype=np.float64))
        ref = loading.reference([structures], settings, source="<reference>")
        return Reference(ref.x, ref.h,
                         f"{len(items)} reference structure(s), {len(x)} atoms", settings)
    if any(isinstance(a, Atoms) for a in items):
        raise QuestsError("the reference mixes files and structures")
    # files: the core's loading service (cached) and its one bandwidth policy
    batch = loading.load_files(
        [loading.FileRequest(str(path), index=index, format=format, type_map=type_map,
                             role="reference") for path in items],
        settings, cache=cache, role="reference",
    )
    ref = loading.reference(batch.items, settings, source=", ".join(map(str, items)))
    x = np.asarray(ref.x, dtype=np.float64)
    n_frames = sum(len(it.dataset.frames) for it in batch.items)
    names = ", ".join(Path(str(p)).name for p in items)
    return Reference(x, ref.h, f"{names} ({n_frames} frames, {len(x)} atoms)", settings)


@dataclass(frozen=True)
class FrameReport:
    """The numbers of one watched frame.

    Attributes
    ----------
    frame : int
        Frame number (in the file, or the step of an ASE run).
    stats : FrameStats
        H, mean/max dH, fraction novel.
    dh : (n,) array
        Per-atom dH against the reference.
    novel_run : int
        Consecutive frames (this one included) above the novel fraction.
    flagged : bool
        The rule fired on this frame.
    seconds : float
        Time spent on this frame (descriptors + statistics).
    """

    frame: int
    stats: FrameStats
    dh: np.ndarray
    novel_run: int
    flagged: bool
    seconds: float


def frame_statistics_of(atoms: Atoms, reference: Reference, frame: int, *,
                        exact_entropy: bool = False, exact_max_atoms: int | None = None,
                        source: str = "<memory>") -> tuple[FrameStats, np.ndarray]:
    """Descriptors of ``atoms`` and :func:`frame_statistics` against ``reference``.

    Seed of a sampled H: ``(settings.seed, frame)``, as in the ``trajectory`` command.
    """
    from quests_core.trajectory import frame_statistics

    s = reference.settings
    try:
        x = _compute(s)([atoms], **s.descriptor_kwargs())
    except QuestsError as exc:
        raise QuestsError(f"frame {frame}: {exc.detail}", source=source) from None
    # H and dH at the reference's one bandwidth, as ``trajectory`` (docs/spec.md section 6)
    return frame_statistics(
        x, reference.x, reference.h, exact=exact_entropy,
        threshold=exact_max_atoms, seed=(s.seed, int(frame)), **s.kernel_kwargs(),
    )


def frame_report(atoms: Atoms, reference: Reference, rule: NoveltyRule, frame: int,
                 **kwargs: Any) -> FrameReport:
    """:func:`frame_statistics_of` one frame and feed its fraction novel to ``rule``."""
    t0 = time.perf_counter()
    stats, dh = frame_statistics_of(atoms, reference, frame, **kwargs)
    flagged = rule.update(stats.frac_novel)
    return FrameReport(int(frame), stats, dh, rule.run, flagged, time.perf_counter() - t0)


# ----------------------------------------------------------------------------
# Actions
# ----------------------------------------------------------------------------


def stop_line(report: FrameReport, source: str, rule: NoveltyRule) -> str:
    """The one line of the stop file (key=value words, then a newline)."""
    s = report.stats
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (f"extrapolation frame={report.frame} frac_novel={s.frac_novel:.6g} "
            f"mean_dH={s.mean_dH:.6g} max_dH={s.max_dH:.6g} H={s.H:.6g} n_atoms={s.n_atoms} "
            f"novel_fraction={rule.novel_fraction:g} patience={rule.patience} "
            f"file={shlex.quote(str(source))} time={stamp}\n")


def write_stop_file(path: str | os.PathLike, line: str) -> Path:
    """Write ``line`` to ``path`` atomically (a poller never sees a half-written file)."""
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o644)  # mkstemp makes it 0600: the simulation may be another user
        with os.fdopen(fd, "w") as out:
            out.write(line)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError, UnboundLocalError):
            os.unlink(tmp)
        raise QuestsError(f"cannot write the stop file ({exc.strerror or exc})",
                          source=str(path)) from None
    return target


def command_environment(report: FrameReport, source: str,
                        stop_file: str | None = None) -> dict[str, str]:
    """Environment variables given to ``--on-extrapolation`` (added to the current ones)."""
    s = report.stats
    env = {
        "QUESTS_FRAME": str(report.frame),
        "QUESTS_FILE": str(source),
        "QUESTS_FRAC_NOVEL": f"{s.frac_novel:.6g}",
        "QUESTS_MEAN_DH": f"{s.mean_dH:.6g}",
        "QUESTS_MAX_DH": f"{s.max_dH:.6g}",
        "QUESTS_H": f"{s.H:.6g}",
        "QUESTS_N_ATOMS": str(s.n_atoms),
    }
    if stop_file:
        env["QUESTS_STOP_FILE"] = str(stop_file)
    return env


def run_command(command: str, env: dict[str, str]) -> int:
    """Run ``command`` through the shell with ``env`` added; its exit status."""
    try:
        done = subprocess.run(command, shell=True, env={**os.environ, **env}, check=False)
    except OSError as exc:
        raise QuestsError(f"cannot run the --on-extrapolation command: {exc}") from None
    return int(done.returncode)


# ----------------------------------------------------------------------------
# The watch loop
# ----------------------------------------------------------------------------

HEADER = f"{'frame':>7} {'atoms':>7} {'mean_dH':>10} {'max_dH':>10} {'novel':>7} {'H':>8}"


def _row(report: FrameReport, rule: NoveltyRule) -> str:
    """The printed line of one frame (under :data:`HEADER`)."""
    s = report.stats
    flag = ""
    if report.flagged:
        flag = f"  novel {report.novel_run}/{rule.patience}: EXTRAPOLATION"
    elif report.novel_run:
        flag = f"  novel {report.novel_run}/{rule.patience}"
    h = f"{s.H:8.4f}" if s.exact else f"{s.H:8.4f}~"
    return (f"{report.frame:>7} {s.n_atoms:>7} {s.mean_dH:>10.4g} {s.max_dH:>10.4g} "
            f"{s.frac_novel:>7.4f} {h}{flag}")


def _csv_row(report: FrameReport, offset: int, restarts: int) -> list[Any]:
    """The ``--output`` row of one frame (:data:`CSV_COLUMNS`; ``offset`` in bytes)."""
    s = report.stats
    return [report.frame, offset, s.n_atoms, repr(s.mean_dH), repr(s.max_dH),
            repr(s.frac_novel), repr(s.H), repr(s.H_stderr), report.novel_run,
            int(report.flagged), restarts, f"{report.seconds:.3f}"]


def check_destinations(output: str | None = None, stop_file: str | None = None) -> None:
    """Refuse, before any work, a ``output`` that is not a .csv file in an existing
    directory, or a ``stop_file`` in a directory that does not exist."""
    if output and Path(output).suffix.lower() != ".csv":
        raise QuestsError("the per-frame output of watch is a .csv file", source=output)
    if output and not Path(output).resolve().parent.is_dir():
        raise QuestsError("output directory does not exist", source=output)
    if stop_file and not Path(stop_file).resolve().parent.is_dir():
        raise QuestsError("the directory of the stop file does not exist", source=stop_file)


def watch(
    path: str | os.PathLike,
    reference: Reference,
    rule: NoveltyRule | None = None,
    *,
    format: str | None = None,
    type_map: Any = None,
    interval: float | None = None,
    timeout: float | None = None,
    from_start: bool = False,
    stop_file: str | None = None,
    on_extrapolation: str | None = None,
    keep_going: bool = False,
    output: str | None = None,
    exact_entropy: bool = False,
    exact_max_atoms: int | None = None,
    stop: Any = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    on_replace: str = "end",
) -> int:
    """Follow ``path`` and report every new frame; act when ``rule`` fires.

    Parameters
    ----------
    path : path-like
        The trajectory being written (extxyz/xyz or LAMMPS text dump; it may
        not exist yet; a named pipe, a directory or a device is refused). A
        file created after the watch started is read from its frame 0.
    reference : Reference
        Descriptors and bandwidth (:func:`load_reference`).
    rule : NoveltyRule, optional
        Default: ``NoveltyRule()`` (:data:`DEFAULT_NOVEL_FRACTION`,
        :data:`DEFAULT_PATIENCE`). Reset when the file restarts.
    format, type_map, interval, timeout, from_start, stop
        Of the :class:`~quests_core.follow.Follower` (``interval`` None: its default).
    stop_file : str, optional
        Written on extrapolation (:func:`write_stop_file`, :func:`stop_line`).
    on_extrapolation : str, optional
        Shell command run on extrapolation (:func:`command_environment`).
    keep_going : bool
        After acting, follow on until the end instead of returning.
    output : str, optional
        A .csv file: one row per frame (:data:`CSV_COLUMNS`), flushed row by row.
    exact_entropy, exact_max_atoms
        H of each frame (see :func:`frame_statistics_of`).
    out, err : text streams, optional
        Per-frame lines (default ``sys.stdout``) and messages (default ``sys.stderr``).
    on_replace : {"end", "restart"}
        A file deleted or replaced by another file (new inode) while watched:
        ``"end"`` (default) ends the watch with :data:`EXIT_FILE_GONE`;
        ``"restart"`` follows the new file from its frame 0 (the rule starts
        counting again). A path that becomes a directory, pipe or device
        always ends it.

    Returns
    -------
    int
        :data:`EXIT_EXTRAPOLATION` when the rule fired; else
        :data:`EXIT_FILE_GONE` when the file was deleted or replaced (one line
        on ``err`` naming the file and the last frame read); else ``EXIT_OK``
        (the follow ended: ``timeout`` without growth or ``stop``).

    Raises
    ------
    QuestsError
        Bad input: a path that is not a regular file, a format that cannot be
        followed, a corrupt frame (naming file and frame, counted from 0; an
        absurd atom count included), an unwritable output or stop file.
    """
    from quests_core.follow import DEFAULT_INTERVAL, FollowedFileGone, Follower

    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err

    def message(text: str) -> None:
        print(text, file=err, flush=True)

    rule = NoveltyRule() if rule is None else rule
    check_destinations(output, stop_file)
    source = str(path)
    follower = Follower(source, format=format, type_map=type_map,
                        interval=DEFAULT_INTERVAL if interval is None else interval,
                        timeout=timeout, from_start=from_start, stop=stop, notify=message,
                        on_replace=on_replace)
    message(f"following {source} ({follower.format}, "
            f"{'from the start' if from_start else 'new frames only'}"
            f"{f', ends after {timeout:g} s without growth' if timeout else ''}); rule: "
            f"fraction novel > {rule.novel_fraction:g} in {rule.patience} consecutive frame(s)")
    fd = writer = None
    detected: FrameReport | None = None
    restarts = n_frames = 0
    gone: FollowedFileGone | None = None
    try:
        if output:
            fd = open(output, "w", newline="")  # noqa: SIM115 - closed below
            writer = csv.writer(fd)
            writer.writerow(CSV_COLUMNS)
            fd.flush()
        print(HEADER, file=out, flush=True)
        try:
            for item in follower:
                if item.restarts != restarts:
                    restarts = item.restarts
                    rule.reset()
                report = frame_report(item.atoms, reference, rule, item.frame,
                                      exact_entropy=exact_entropy, exact_max_atoms=exact_max_atoms,
                                      source=source)
                n_frames += 1
                print(_row(report, rule), file=out, flush=True)
                if writer is not None:
                    writer.writerow(_csv_row(report, item.offset, item.restarts))
                    fd.flush()
                if report.flagged and detected is None:
                    detected = report
                    act(report, rule, source, stop_file=stop_file,
                        on_extrapolation=on_extrapolation, notify=message)
                    if not keep_going:
                        return EXIT_EXTRAPOLATION
        except FollowedFileGone as exc:  # deleted or replaced: reported below
            gone = exc
    finally:
        if fd is not None:
            fd.close()
    found = (f"; extrapolation at frame {detected.frame}" if detected else "; no extrapolation")
    if gone is not None:
        message(f"error: {gone}; watch ends after {n_frames} frame(s){found}")
        return EXIT_EXTRAPOLATION if detected is not None else EXIT_FILE_GONE
    why = f"no growth for {timeout:g} s" if follower.ended == "timeout" else "stopped"
    message(f"watch ends ({why}) after {n_frames} frame(s){found}")
    return EXIT_EXTRAPOLATION if detected is not None else EXIT_OK


def act(report: FrameReport, rule: NoveltyRule, source: str, *, stop_file: str | None = None,
        on_extrapolation: str | None = None, notify: Any = None) -> None:
    """What happens when ``rule`` fires: a message, the stop file, then the command."""
    notify = notify or (lambda text: print(text, file=sys.stderr, flush=True))
    s = report.stats
    notify(f"extrapolation at frame {report.frame}: {s.frac_novel:.1%} of the atoms have "
           f"dH > 0 (> {rule.novel_fraction:g} for {rule.patience} frame(s) in a row), "
           f"mean dH {s.mean_dH:.4g}, max dH {s.max_dH:.4g}")
    if stop_file:
        write_stop_file(stop_file, stop_line(report, source, rule))
        notify(f"wrote the stop file {stop_file}")
    if on_extrapolation:
        status = run_command(on_extrapolation, command_environment(report, source, stop_file))
        notify(f"--on-extrapolation command exited with status {status}")


if __name__ == "__main__":  # pragma: no cover - the command is in quests_core.cli.watch
    sys.exit("the watch command is `quests-dashboard watch ...` "
             "(or `python -m quests_core.cli watch ...`)")
