"""Watch a running simulation: per-frame dH against a reference, and act when it extrapolates.

The ``watch`` command follows a trajectory file that a simulation is still
appending (:class:`quests_core.follow.Follower`), computes for each new frame
its descriptors, its H and the dH of its atoms against reference descriptors
(:func:`quests_core.trajectory.frame_statistics`), prints one line per frame
and, when the fraction of atoms with dH > 0 stays above ``--novel-fraction``
for ``--patience`` consecutive frames, acts: writes a stop file that the
simulation polls (docs/watch.md: LAMMPS ``fix halt`` on ``is_file()``, ASE
:mod:`quests_core.ase_observer`), runs a command, and exits with status
:data:`EXIT_EXTRAPOLATION`.

The pieces are also used on their own: :class:`NoveltyRule` (the one rule,
also used by the ASE observer and by the tests' offline computation through
:func:`first_flag`), :func:`load_reference`, :func:`frame_report`.

Exit status of ``watch``
------------------------
- 0: followed to the end (``--timeout`` seconds without growth) without
  extrapolation;
- 1: bad input (one-line error naming file and frame; the CLI's status for
  every input error);
- 2: usage error;
- 4 (:data:`EXIT_EXTRAPOLATION`): extrapolation detected (the stop file and
  the command have been handled). Not 3, which the CLI keeps for internal
  errors, so a script can tell a detected extrapolation from a crash.

Invariants and memory
---------------------
- The reference descriptors are computed once (through the descriptor cache)
  and kept; each frame's descriptors and dH live only while it is processed:
  memory is O(reference + one frame).
- A frame's numbers equal those of :func:`frame_statistics` on the same frame
  offline (same settings, seed ``(seed, frame)``).
- The actions run at most once per watch.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from quests_core.errors import QuestsError
from quests_core.settings import DEFAULTS, Settings
from quests_core.trajectory import FrameStats

__all__ = [
    "DEFAULT_NOVEL_FRACTION",
    "DEFAULT_PATIENCE",
    "EXIT_EXTRAPOLATION",
    "FrameReport",
    "NoveltyRule",
    "Reference",
    "add_parser",
    "first_flag",
    "frame_report",
    "frame_statistics_of",
    "load_reference",
    "main",
    "run",
    "run_command",
    "stop_line",
    "write_stop_file",
]

#: Default threshold on the fraction of a frame's atoms with dH > 0 (see docs/watch.md).
DEFAULT_NOVEL_FRACTION = 0.05
#: Default number of consecutive frames above the threshold before acting.
DEFAULT_PATIENCE = 2
EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE, EXIT_EXTRAPOLATION = 0, 1, 2, 4
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


def _volume_h(atoms_list: Sequence[Atoms], source: str) -> float:
    from quests_core.dataset import frame_record
    from quests_core.settings import volume_rule_bandwidth

    v = [frame_record(a)["volume_per_atom"] for a in atoms_list]
    return volume_rule_bandwidth(v, [len(a) for a in atoms_list], source=source)


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
        Files go through :func:`quests_core.cache.file_descriptors` (cached when
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
    from quests_core.cache import file_descriptors

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
        from quests_core.io import validate_atoms

        for i, a in enumerate(items):
            validate_atoms(a, "<reference>", i)
        x = _compute(settings)(items, k=settings.k, cutoff=settings.cutoff,
                               species=list(settings.species or ()) or None)
        h = (settings.bandwidth if settings.bandwidth_rule == "fixed"
             else _volume_h(items, "<reference>"))
        return Reference(np.asarray(x, dtype=np.float64), h,
                         f"{len(items)} reference structure(s), {len(x)} atoms", settings)
    xs, tables = [], []
    for path in items:
        if isinstance(path, Atoms):
            raise QuestsError("the reference mixes files and structures")
        res = file_descriptors(
            path, index=index, format=format, type_map=type_map, k=settings.k,
            cutoff=settings.cutoff, species=list(settings.species or ()) or None,
            compute=_compute(settings), cache=cache, chunk_atoms=settings.chunk_atoms,
        )
        xs.append(np.asarray(res.descriptors, dtype=np.float64))
        tables.append(res.dataset.frames)
    import pandas as pd

    frames = pd.concat(tables, ignore_index=True)
    h = settings.resolve_bandwidth(frames, source=", ".join(map(str, items)))
    x = xs[0] if len(xs) == 1 else np.concatenate(xs)
    names = ", ".join(Path(str(p)).name for p in items)
    return Reference(x, h, f"{names} ({len(frames)} frames, {len(x)} atoms)", settings)


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
        x = _compute(s)([atoms], k=s.k, cutoff=s.cutoff, species=list(s.species or ()) or None)
    except QuestsError as exc:
        raise QuestsError(f"frame {frame}: {exc.detail}", source=source) from None
    h_frame = reference.h
    if s.bandwidth_rule == "volume":
        h_frame = _volume_h([atoms], f"{source} frame {frame}")
    return frame_statistics(
        x, reference.x, reference.h, h_frame=h_frame, exact=exact_entropy,
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
# Command line
# ----------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not np.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not (0.0 <= value < 1.0):
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def _bandwidth(text: str) -> float | str:
    return "auto" if text.strip().lower() == "auto" else _positive_float(text)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``watch`` subcommand to an ``add_subparsers()`` object; returns its parser."""
    from quests_core.follow import DEFAULT_INTERVAL

    p = subparsers.add_parser(
        "watch",
        help="follow a running simulation and act when it leaves the reference data",
        description=(
            "Follow a trajectory file that a simulation is still writing (extxyz/xyz or "
            "LAMMPS text dump), print per new frame its mean dH, max dH, fraction of atoms "
            "with dH > 0 against the reference and H, and when the fraction stays above "
            "--novel-fraction for --patience frames in a row: write --stop-file, run "
            "--on-extrapolation and exit with status 4. Exit 0: no new frame for "
            "--timeout seconds; 1: bad input; 2: usage. docs/watch.md shows how LAMMPS "
            "(fix halt + is_file) and ASE poll the stop file."),
    )
    p.add_argument("file", help="trajectory being written (it may not exist yet)")
    p.add_argument("-r", "--reference", nargs="+", required=True,
                   help="reference (training) structure files")
    p.add_argument("--reference-index", default=":",
                   help="frames of the reference files (default ':')")
    g = p.add_argument_group("when to act")
    g.add_argument("--novel-fraction", type=_fraction, default=DEFAULT_NOVEL_FRACTION,
                   help="act when more than this fraction of a frame's atoms have dH > 0 "
                   f"(default {DEFAULT_NOVEL_FRACTION})")
    g.add_argument("--patience", type=_positive_int, default=DEFAULT_PATIENCE,
                   help="... in this many consecutive frames (default "
                   f"{DEFAULT_PATIENCE})")
    g.add_argument("--stop-file", default=None, metavar="PATH",
                   help="write this file (one line: frame and numbers) on extrapolation")
    g.add_argument("--on-extrapolation", default=None, metavar="CMD",
                   help="shell command run on extrapolation, with QUESTS_FRAME, QUESTS_FILE, "
                   "QUESTS_FRAC_NOVEL, QUESTS_MEAN_DH, QUESTS_MAX_DH, QUESTS_H, "
                   "QUESTS_N_ATOMS, QUESTS_STOP_FILE in its environment")
    g.add_argument("--keep-going", action="store_true",
                   help="after acting, keep following until --timeout (exit status 4 at the end)")
    g = p.add_argument_group("following")
    g.add_argument("--from-start", action="store_true",
                   help="process the frames already in the file (default: only new frames)")
    g.add_argument("--timeout", type=_positive_float, default=None, metavar="SECONDS",
                   help="end after this many seconds without growth (default: never)")
    g.add_argument("--interval", type=_positive_float, default=DEFAULT_INTERVAL,
                   metavar="SECONDS", help=f"seconds between polls (default {DEFAULT_INTERVAL})")
    g.add_argument("--format", default=None,
                   help="extxyz, xyz or lammps-dump-text (default: from the name)")
    g.add_argument("--type-map", default=None,
                   help="LAMMPS dump types to elements, e.g. 'Cu,Ni' or '1=Cu,2=Ni'")
    g = p.add_argument_group("descriptor and kernel options")
    g.add_argument("-k", type=_positive_int, default=DEFAULTS.k,
                   help=f"nearest neighbours per environment (default {DEFAULTS.k})")
    g.add_argument("--cutoff", type=_positive_float, default=DEFAULTS.cutoff,
                   help=f"cutoff radius in Å (default {DEFAULTS.cutoff})")
    g.add_argument("--bandwidth", type=_bandwidth, default=DEFAULTS.bandwidth,
                   help="kernel bandwidth h in 1/Å, or 'auto' for the volume rule "
                   f"(default {DEFAULTS.bandwidth})")
    g.add_argument("--species", default=None,
                   help="comma-separated species for the multicomponent descriptor")
    g.add_argument("--precision", choices=("float64", "float32"), default=DEFAULTS.precision,
                   help=f"precision of the kernel sums (default {DEFAULTS.precision})")
    g.add_argument("--threads", type=_positive_int, default=None,
                   help="threads for descriptors and kernels (default: all cores)")
    g.add_argument("--exact-entropy", action="store_true",
                   help="exact H of every frame, whatever its size")
    g.add_argument("--exact-max-atoms", type=_positive_int, default=None,
                   help="largest frame whose H is exact (default 40000)")
    g.add_argument("--seed", type=int, default=DEFAULTS.seed,
                   help=f"seed of sampled H (default {DEFAULTS.seed})")
    g = p.add_argument_group("output")
    g.add_argument("-o", "--output", default=None, metavar="CSV",
                   help="also write the per-frame lines to this .csv file, row by row")
    g.add_argument("--cache-dir", default=None,
                   help="descriptor cache directory of the reference "
                   "(default $QUESTS_CACHE_DIR or ~/.cache/quests-dashboard)")
    g.add_argument("--no-cache", action="store_true", help="do not read or write the cache")
    g.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show tracebacks")
    p.set_defaults(func=run, command="watch")
    return p


def _settings(args: argparse.Namespace) -> Settings:
    auto = args.bandwidth == "auto"
    return DEFAULTS.replace(
        k=args.k, cutoff=args.cutoff, species=args.species,
        bandwidth=DEFAULTS.bandwidth if auto else float(args.bandwidth),
        bandwidth_rule="volume" if auto else "fixed", precision=args.precision,
        threads=args.threads, seed=args.seed,
    )


HEADER = f"{'frame':>7} {'atoms':>7} {'mean_dH':>10} {'max_dH':>10} {'novel':>7} {'H':>8}"


def _row(report: FrameReport, rule: NoveltyRule) -> str:
    s = report.stats
    flag = ""
    if report.flagged:
        flag = f"  novel {report.novel_run}/{rule.patience}: EXTRAPOLATION"
    elif report.novel_run:
        flag = f"  novel {report.novel_run}/{rule.patience}"
    h = f"{s.H:8.4f}" if s.exact else f"{s.H:8.4f}~"
    return (f"{report.frame:>7} {s.n_atoms:>7} {s.mean_dH:>10.4g} {s.max_dH:>10.4g} "
            f"{s.frac_novel:>7.4f} {h}{flag}")


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """``watch RUN --reference TRAIN...``; returns the exit status (see the module doc)."""
    from quests_core.follow import Follower

    settings = _settings(args)
    rule = NoveltyRule(args.novel_fraction, args.patience)
    if args.output and Path(args.output).suffix.lower() != ".csv":
        raise QuestsError("--output of watch is a .csv file", source=args.output)
    if args.output and not Path(args.output).resolve().parent.is_dir():
        raise QuestsError("output directory does not exist", source=args.output)
    if args.stop_file and not Path(args.stop_file).resolve().parent.is_dir():
        raise QuestsError("the directory of the stop file does not exist", source=args.stop_file)
    follower = Follower(args.file, format=args.format, type_map=args.type_map,
                        interval=args.interval, timeout=args.timeout,
                        from_start=args.from_start, notify=_err)
    cache = None
    if not args.no_cache:
        from quests_core.cache import DescriptorCache

        cache = DescriptorCache(args.cache_dir)
    if settings.threads:
        import quests_core as qc

        qc.set_num_threads(settings.threads)
    t0 = time.perf_counter()
    reference = load_reference(args.reference, settings, index=args.reference_index,
                               cache=cache)
    _err(f"reference: {reference.description}, h = {reference.h:.4g} 1/Å "
         f"({time.perf_counter() - t0:.1f} s); rule: fraction novel > "
         f"{rule.novel_fraction:g} in {rule.patience} consecutive frame(s)")
    _err(f"following {args.file} ({follower.format}, "
         f"{'from the start' if args.from_start else 'new frames only'}"
         f"{f', ends after {args.timeout:g} s without growth' if args.timeout else ''})")
    out = writer = None
    detected: FrameReport | None = None
    restarts = 0
    n_frames = 0
    try:
        if args.output:
            out = open(args.output, "w", newline="")  # noqa: SIM115 - closed below
            writer = csv.writer(out)
            writer.writerow(CSV_COLUMNS)
            out.flush()
        print(HEADER, flush=True)
        for item in follower:
            if item.restarts != restarts:
                restarts = item.restarts
                rule.reset()
            report = frame_report(item.atoms, reference, rule, item.frame,
                                  exact_entropy=args.exact_entropy,
                                  exact_max_atoms=args.exact_max_atoms, source=args.file)
            n_frames += 1
            print(_row(report, rule), flush=True)
            if writer is not None:
                s = report.stats
                writer.writerow([report.frame, item.offset, s.n_atoms, repr(s.mean_dH),
                                 repr(s.max_dH), repr(s.frac_novel), repr(s.H), repr(s.H_stderr),
                                 report.novel_run, int(report.flagged), item.restarts,
                                 f"{report.seconds:.3f}"])
                out.flush()
            if report.flagged and detected is None:
                detected = report
                _act(args, report, rule)
                if not args.keep_going:
                    return EXIT_EXTRAPOLATION
    finally:
        if out is not None:
            out.close()
    why = f"no growth for {args.timeout:g} s" if follower.ended == "timeout" else "stopped"
    _err(f"watch ends ({why}) after {n_frames} frame(s)"
         + (f"; extrapolation at frame {detected.frame}" if detected else
            "; no extrapolation"))
    return EXIT_EXTRAPOLATION if detected is not None else EXIT_OK


def _act(args: argparse.Namespace, report: FrameReport, rule: NoveltyRule) -> None:
    s = report.stats
    _err(f"extrapolation at frame {report.frame}: {s.frac_novel:.1%} of the atoms have dH > 0 "
         f"(> {rule.novel_fraction:g} for {rule.patience} frame(s) in a row), mean dH "
         f"{s.mean_dH:.4g}, max dH {s.max_dH:.4g}")
    if args.stop_file:
        write_stop_file(args.stop_file, stop_line(report, args.file, rule))
        _err(f"wrote the stop file {args.stop_file}")
    if args.on_extrapolation:
        status = run_command(args.on_extrapolation,
                             command_environment(report, args.file, args.stop_file))
        _err(f"--on-extrapolation command exited with status {status}")


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone ``watch`` entry (``argv`` with or without the word ``watch``).

    Returns the exit status: 0, 1 (bad input, one-line error on stderr), 2
    (usage), 4 (extrapolation), 130 (interrupted).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["watch"]:
        argv = argv[1:]
    parser = argparse.ArgumentParser(prog="quests-dashboard")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_parser(sub)
    try:
        args = parser.parse_args(["watch", *argv])
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return int(args.func(args))
    except QuestsError as exc:
        if getattr(args, "debug", False):
            raise
        _err(f"error: {exc}")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
