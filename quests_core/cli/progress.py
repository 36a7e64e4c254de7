"""Progress bars of the command line (tqdm on stderr, off with ``--no-progress``).

Holds :func:`progress_bar` (one bar), :func:`kernel_bar` (a bar fed by an
engine's ``progress(done, total)`` callback) and :func:`stage_bars` (one bar
per stage of a ``progress(stage, done, total)`` callback, e.g.
:func:`quests_core.trajectory.frame_statistics`). Bars never outlive their
``with`` block (``leave=False``), so the printed results stay clean.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def progress_bar(args: argparse.Namespace, **kwargs: Any):
    """A tqdm bar on stderr, disabled by ``--no-progress``."""
    from tqdm.auto import tqdm

    disable = True if getattr(args, "no_progress", False) else None
    return tqdm(disable=disable, file=sys.stderr, leave=False, dynamic_ncols=True, **kwargs)


def _feed(bar) -> Callable[[float, float], None]:
    """``progress(done, total)`` that moves ``bar`` to ``done`` of ``total``."""

    def update(done: float, total: float) -> None:
        if bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    return update


@contextmanager
def kernel_bar(
    args: argparse.Namespace, desc: str, **kwargs: Any
) -> Iterator[Callable[[float, float], None]]:
    """``with kernel_bar(args, "dH") as progress:`` a callback for the engine's ``progress``."""
    kwargs.setdefault("unit", "row")
    bar = progress_bar(args, desc=desc, **kwargs)
    try:
        yield _feed(bar)
    finally:
        bar.close()


@contextmanager
def stage_bars(
    args: argparse.Namespace, label: str
) -> Iterator[Callable[[str, int, int], None]]:
    """A ``progress(stage, done, total)`` callback showing one bar per stage (``"H frame 3"``).

    A stage's bar is closed when the next stage starts, the last one on leaving.
    """
    current: dict[str, Any] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in current:
            for bar, _ in current.values():
                bar.close()
            current.clear()
            bar = progress_bar(args, desc=f"{stage} {label}", unit="row")
            current[stage] = (bar, _feed(bar))
        current[stage][1](done, total)

    try:
        yield update
    finally:
        for bar, _ in current.values():
            bar.close()
