"""``quests-dashboard serve [dashboard options]``: hand over to ``dashboard.launch.main``.

The dashboard is imported only here, when the command runs, so the batch
commands never import it. :func:`serve_argv` recognises the command before
argparse (its arguments belong to the dashboard's own parser).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
from collections.abc import Sequence

from quests_core.errors import QuestsError

NAME = "serve"
#: The program name the dashboard's help and messages use when started this way.
PROG = f"quests-dashboard {NAME}"


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    """Register the subcommand (it takes none of the ``common`` options)."""
    p = sub.add_parser(
        NAME,
        add_help=False,
        help="start the dashboard",
        description="Start the dashboard; the arguments go to it.",
    )
    p.add_argument("serve_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``serve [dashboard options]``"""
    return serve(list(getattr(args, "serve_args", []) or []))


def serve(argv: list[str]) -> int:
    """Run ``dashboard.launch.main(argv)``; a missing dashboard is a one-line error."""
    try:
        launch = importlib.import_module("dashboard.launch")
    except ModuleNotFoundError as exc:
        if exc.name in ("dashboard", "dashboard.launch"):
            raise QuestsError("the dashboard is not installed (dashboard.launch missing)") from None
        raise QuestsError(f"the dashboard needs the missing package {exc.name!r}") from None
    try:  # the help and messages say `quests-dashboard serve` (a main(argv) without
        # prog, e.g. a stand-in, is called as before)
        takes_prog = "prog" in inspect.signature(launch.main).parameters
    except (TypeError, ValueError):
        takes_prog = False
    return int((launch.main(argv, prog=PROG) if takes_prog else launch.main(argv)) or 0)


def serve_argv(argv: Sequence[str]) -> tuple[bool, list[str]] | None:
    """If the command is ``serve``, its arguments (and whether --debug came first)."""
    debug = False
    for i, token in enumerate(argv):
        if token == "--debug":
            debug = True
            continue
        if token == NAME:
            return debug, list(argv[i + 1 :])
        return None
    return None
