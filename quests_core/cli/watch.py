"""``quests-dashboard watch FILE -r REF...``: follow a running simulation, act when it extrapolates.

The options become a :class:`~quests_core.settings.Settings` through
:func:`.parser.settings_from_args`; the reference is loaded through
:func:`.loading.load_reference`, as for ``dh`` (structure files through the
descriptor cache, or saved descriptors ``.npy``/``.npz`` whose layout matches
the settings); :func:`quests_core.watch.watch` follows the file, prints one
line per frame, writes the ``--output`` CSV and acts (stop file, command).

Options: those of the common parser that apply to a followed text file (``-k``,
``--cutoff``, ``--bandwidth`` incl. ``auto``, ``--species``, ``--precision``,
``--type-map``, ``--threads``, ``--chunk-atoms``, the cache and progress
options; not ``--index``, ``--topology``, ``--time-step``, ``--skip-bad``),
taken from the ``common`` parent itself, so defaults and help are the same
objects. ``--format`` is the followed file's (the reference files' formats are
detected).

Exit status (:data:`EPILOG`): 0 no extrapolation until ``--timeout``; 1 bad
input (a path that is not a regular file, refused before anything opens it;
a corrupt frame); 2 usage; 4 extrapolation
(:data:`quests_core.watch.EXIT_EXTRAPOLATION`); 5 the followed file was
deleted or replaced while watched (:data:`quests_core.watch.EXIT_FILE_GONE`);
130 interrupted.

Memory: the reference descriptors and one frame (see :mod:`quests_core.watch`).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from .loading import load_reference
from .parser import (
    add_reference_options,
    add_seed,
    bandwidth,
    override_option,
    positive_float,
    positive_int,
    prepare,
)

NAME = "watch"

#: dests of the common options that apply to a followed file (the rest are left out)
COMMON_OPTIONS = ("k", "cutoff", "bandwidth", "species", "precision", "type_map", "threads",
                  "cache_dir", "no_cache", "chunk_atoms", "no_progress", "debug")

EPILOG = """exit status:
  0    followed to the end (--timeout seconds without growth), no extrapolation
  1    bad input (one-line error naming the file and frame): also a FILE that is
       not a regular file (named pipe, directory, device) and a corrupt frame,
       e.g. an atom count that its lines do not hold
  2    usage error
  4    extrapolation detected (after --stop-file and --on-extrapolation)
  5    FILE was deleted or replaced (by another file, a directory, ...) while
       watched (4 if an extrapolation was detected before, with --keep-going);
       with --on-replace restart a new regular file is followed from frame 0
  130  interrupted

Frames count from 0 (the first frame of FILE is frame 0) in every line.

docs/watch.md shows how LAMMPS (fix halt on is_file()) and ASE poll the stop file."""


def _fraction(text: str) -> float:
    """argparse type of ``--novel-fraction``: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not (0.0 <= value < 1.0):
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def _common_subset(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """Add the actions of ``common`` named in :data:`COMMON_OPTIONS` to ``parser``, by group.

    The actions are shared with ``common`` (as ``parents=[common]`` does): they
    must not be changed here.
    """
    for group in common._action_groups:
        actions = [a for a in group._group_actions if a.dest in COMMON_OPTIONS]
        if not actions:
            continue
        target = parser.add_argument_group(group.title, group.description)
        for action in actions:
            target._add_action(action)


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    """Register the subcommand."""
    from quests_core.follow import DEFAULT_INTERVAL, FOLLOW_FORMATS, ON_REPLACE
    from quests_core.sampling import EXACT_MAX_ATOMS, EXACT_MAX_ATOMS_ENV
    from quests_core.watch import DEFAULT_NOVEL_FRACTION, DEFAULT_PATIENCE

    p = sub.add_parser(
        NAME,
        help="follow a running simulation and act when it leaves the reference data",
        description=textwrap.fill(
            "Follow a trajectory file that a simulation is still writing (extxyz/xyz or "
            "LAMMPS text dump), print per new frame its mean dH, max dH, fraction of atoms "
            "with dH > 0 against the reference and H, and when the fraction stays above "
            "--novel-fraction for --patience frames in a row: write --stop-file, run "
            "--on-extrapolation and exit with status 4.", 78),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", help="trajectory being written (it may not exist yet)")
    add_reference_options(
        p, required=True, of="followed file",
        help_text="reference (training) structure files, or saved descriptors (.npy/.npz)",
    )
    override_option(p, "reference_index", ":", "frames of the reference files (default ':')")
    g = p.add_argument_group("when to act")
    g.add_argument("--novel-fraction", type=_fraction, default=DEFAULT_NOVEL_FRACTION,
                   help="act when more than this fraction of a frame's atoms have dH > 0 "
                   f"(default {DEFAULT_NOVEL_FRACTION})")
    g.add_argument("--patience", type=positive_int, default=DEFAULT_PATIENCE,
                   help=f"... in this many consecutive frames (default {DEFAULT_PATIENCE})")
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
    g.add_argument("--timeout", type=positive_float, default=None, metavar="SECONDS",
                   help="end after this many seconds without growth (default: never)")
    g.add_argument("--interval", type=positive_float, default=DEFAULT_INTERVAL,
                   metavar="SECONDS", help=f"seconds between polls (default {DEFAULT_INTERVAL})")
    g.add_argument("--format", dest="follow_format", choices=FOLLOW_FORMATS, default=None,
                   help="format of the followed file (default: from its name)")
    g.add_argument("--on-replace", choices=ON_REPLACE, default="end",
                   help="FILE deleted or replaced by another file while watched: end with "
                   "status 5 (default) or restart (follow the new file from frame 0)")
    g = p.add_argument_group("per-frame H")
    g.add_argument("--exact-entropy", action="store_true",
                   help="exact H of every frame, whatever its size")
    g.add_argument("--exact-max-atoms", type=positive_int, default=None,
                   help=f"largest frame whose H is exact (default ${EXACT_MAX_ATOMS_ENV} or "
                   f"{EXACT_MAX_ATOMS})")
    add_seed(g, "seed of sampled H")
    _common_subset(p, common)
    p.add_argument("-o", "--output", default=None, metavar="CSV",
                   help="also write the per-frame lines to this .csv file, row by row")
    # what .loading reads for the reference files: formats detected, no index/topology/skip
    p.set_defaults(func=run, outputs=(".csv",), extra_outputs={}, format=None, index=":",
                   topology=None, time_step=None, skip_bad=False)


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """``watch FILE --reference REF...``; returns the exit status (see the module doc)."""
    from quests_core.follow import follow_format
    from quests_core.watch import NoveltyRule, Reference, check_destinations, watch

    # a pipe, directory or device, or a format that cannot be followed: at once, before
    # the reference is loaded (follow_format stats the path; it never opens a pipe)
    follow_format(args.file, args.follow_format)
    check_destinations(args.output, args.stop_file)
    settings, _ = prepare(args)
    rule = NoveltyRule(args.novel_fraction, args.patience)
    t0 = time.perf_counter()
    batch, dataset, x = load_reference(args, settings)
    h = bandwidth(settings, dataset)
    names = ", ".join(Path(it.path).name for it in batch.items)
    what = (f"{len(x)} saved descriptors" if dataset is None
            else f"{len(dataset.frames)} frames, {len(x)} atoms")
    reference = Reference(np.asarray(x, dtype=np.float64), h, f"{names} ({what})", settings)
    _err(f"reference: {reference.description}, h = {h:.4g} 1/Å "
         f"({time.perf_counter() - t0:.1f} s)")
    return watch(
        args.file, reference, rule, format=args.follow_format, type_map=args.type_map,
        interval=args.interval, timeout=args.timeout, from_start=args.from_start,
        stop_file=args.stop_file, on_extrapolation=args.on_extrapolation,
        keep_going=args.keep_going, output=args.output, exact_entropy=args.exact_entropy,
        exact_max_atoms=args.exact_max_atoms, on_replace=args.on_replace,
    )
