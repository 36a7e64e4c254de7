"""The ``quests-dashboard`` command line: batch QUESTS analyses of structure files.

Subcommands (one module each, listed in :data:`COMMANDS`)::

    descriptors     descriptors of every atom (cached on disk)
    entropy         information entropy H and diversity D per file or label
    dh              dH of test environments against a reference (--approx for ANN)
    overlap         overlap matrix between files or labels
    learning-curve  H of random subsets and the information gap
    trajectory      per-frame H, mean/max dH and fraction dH > 0 along a trajectory
    nucleation      solid-like clusters per frame and classical nucleation theory
    compress        keep the structures that hold the most information
    active-learning novelty per generation, H and D of the cumulative dataset
    uq              dH against a training set versus per-atom model error
    phase-entropy   entropy difference of two sets of structures at one bandwidth
    report          a self-contained HTML report (and PNG/SVG figures) of files
    watch           follow a running simulation, stop it when it extrapolates (exit 4)
    serve           start the dashboard

A new command is a module with ``NAME``, ``add_parser(subparsers, common)`` and
``run(args)``, listed in :data:`COMMANDS`; every batch command takes the common
options of :mod:`.parser` (one validated Settings) and reads its files through
:mod:`.loading`. :mod:`quests_core.analysis` does not import this package.

The data path of a batch command: :mod:`.parser` (common options, validated
into one :class:`~quests_core.settings.Settings`) -> :mod:`.loading`
(descriptors of the files, cached) -> the command's module (the engine call)
-> :mod:`.output` (summary, table, ``--output``); :mod:`.progress` draws the
bars.

Common options: ``-k``, ``--cutoff``, ``--bandwidth`` (a number or ``auto``,
the volume rule), ``--species``, ``--index``, ``--topology``, ``--threads``,
``--output`` (format by extension), the cache options. Bad input gives a one-line
error naming the file and frame and exit status 1 (``--debug`` shows the
traceback); ``--skip-bad`` processes the remaining files of a batch and lists
the bad ones. Unexpected internal errors give exit status 3. The incomplete
last frame of a multi-frame file that is still being written is skipped with a
one-line warning (see :class:`quests_core.io.TruncatedFrameWarning`).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from quests_core.errors import QuestsError

from . import (
    active_learning,
    compress,
    descriptors,
    dh,
    entropy,
    learning_curve,
    nucleation,
    overlap,
    phase_entropy,
    report,
    serve,
    trajectory,
    uq,
    watch,
)
from .loading import Batch, Loaded, load_files
from .parser import common_parser, settings_from_args

__all__ = [
    "COMMANDS",
    "Batch",
    "Loaded",
    "build_parser",
    "common_parser",
    "load_files",
    "main",
    "settings_from_args",
]

EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 130, 141

#: the command modules, in the order of ``--help``: each has ``NAME``,
#: ``add_parser(subparsers, common)`` and ``run(args) -> int``
COMMANDS = (
    descriptors,
    entropy,
    dh,
    overlap,
    learning_curve,
    trajectory,
    nucleation,
    compress,
    active_learning,
    uq,
    phase_entropy,
    report,
    watch,
    serve,
)


def build_parser() -> argparse.ArgumentParser:
    """The full ``quests-dashboard`` parser (every module of :data:`COMMANDS`)."""
    from quests_core import __version__

    parser = argparse.ArgumentParser(
        prog="quests-dashboard",
        description="QUESTS information entropy, dH and overlap of atomistic data.",
    )
    parser.add_argument("--debug", action="store_true", default=False, help="show tracebacks")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    common = common_parser()
    for command in COMMANDS:
        command.add_parser(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``quests-dashboard`` command line; returns the exit status.

    0: success; 1: bad input (one-line error on stderr); 2: usage error;
    3: unexpected internal error; 130: interrupted; 141: stdout closed early.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    serving = serve.serve_argv(argv)
    debug = bool(serving and serving[0]) or "--debug" in argv
    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = _show_warning
        return _main(argv, serving, debug)


#: Longest warning line printed (a message is cut there, with "…").
WARNING_CHARS = 500


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line on stderr (full warnings with ``--debug``)."""
    text = " ".join(str(message).split())
    if len(text) > WARNING_CHARS:  # a hostile file can make a message of any length
        text = text[:WARNING_CHARS - 1] + "…"
    print(f"warning: {text}", file=sys.stderr)


def _main(argv: list[str], serving: tuple[bool, list[str]] | None, debug: bool) -> int:
    try:
        if serving is not None:
            return serve.serve(serving[1])
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version or a usage error
            return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
        debug = bool(getattr(args, "debug", False))
        return int(args.func(args) or 0)
    except QuestsError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # stdout closed early, e.g. `... | head`: stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # noqa: BLE001 - the CLI reports anything on one line
        if debug:
            raise
        text = " ".join(str(exc).split())[:300]
        print(
            f"internal error: {type(exc).__name__}: {text} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
