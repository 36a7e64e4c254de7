"""``quests-dashboard learning-curve FILE...``: H of random subsets and the information gap.

All files are combined; for each size, ``--repeats`` random subsets (seeded)
give the mean and standard deviation of H
(:func:`quests_core.learning.learning_curve`). The fit
``a - b exp(-c (log N)^2)`` (:func:`quests_core.learning.fit_asymptote`) gives
the asymptote and the gap column; a failed fit, or one whose asymptote is above
log n (:func:`quests_core.learning.asymptote_within_bound`), is reported in the
summary as such, without a gap column.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import pandas as pd

from quests_core.errors import QuestsError

from .loading import combined, load_files
from .output import RESULT_SUFFIXES, finish
from .parser import add_seed, bandwidth, batch_parser, default_of, positive_int, prepare
from .progress import kernel_bar

NAME = "learning-curve"


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    """Register the subcommand."""
    from quests_core.learning import default_sizes, learning_curve

    points = default_of(default_sizes, "points")
    p = batch_parser(
        sub,
        common,
        NAME,
        help="entropy of random subsets and the information gap",
        description="H of random subsets of the environments for increasing "
        "sizes, the asymptote fit a - b exp(-c (log N)^2) and the "
        "information gap.",
        files="structure files (combined)",
    )
    p.add_argument(
        "--sizes", default=None, help="comma-separated subset sizes (default: log-spaced up to all)"
    )
    p.add_argument(
        "--points",
        type=positive_int,
        default=points,
        help=f"number of log-spaced sizes when --sizes is not given (default {points})",
    )
    p.add_argument("--repeats", type=positive_int, default=default_of(learning_curve, "repeats"),
        help="subsets per size",)
    add_seed(p, "random seed")
    p.set_defaults(func=run, outputs=RESULT_SUFFIXES)


def parse_sizes(text: str | None) -> np.ndarray | None:
    """``--sizes``: sorted distinct integers (None when not given)."""
    if text is None:
        return None
    try:
        sizes = np.array([int(s) for s in text.replace(",", " ").split()], dtype=int)
    except ValueError:
        raise QuestsError(f"--sizes {text!r}: expected comma-separated integers") from None
    if sizes.size == 0:
        raise QuestsError("--sizes is empty")
    return np.unique(sizes)


def run(args: argparse.Namespace) -> int:
    """``learning-curve FILE... [--sizes ...] [--repeats R] [--seed S]``"""
    import quests_core as qc
    from quests_core.learning import asymptote_within_bound, default_sizes

    settings, _ = prepare(args)
    batch = load_files(args.files, args, settings=settings)
    dataset, x = combined(batch.items)
    h = bandwidth(settings, dataset)
    sizes = parse_sizes(args.sizes)
    if sizes is None:
        sizes = default_sizes(len(x), points=args.points)
    with kernel_bar(args, "learning curve", unit="subset") as progress:
        curve = qc.learning_curve(
            x,
            sizes,
            h=h,
            repeats=args.repeats,
            seed=settings.seed,
            progress=progress,
            **settings.kernel_kwargs(),
        )
    table = pd.DataFrame(
        {"size": curve.sizes, "log_n": curve.log_n, "H_mean": curve.mean, "H_std": curve.std}
    )
    summary: dict[str, Any] = {
        "environments": int(len(x)),
        "bandwidth": h,
        "repeats": args.repeats,
        "seed": settings.seed,
    }
    try:
        fit = qc.fit_asymptote(curve.sizes, curve.mean)
    except QuestsError as exc:
        summary["fit"] = f"failed: {exc}"
        return finish(args, batch.skipped, summary, table)
    if not asymptote_within_bound(fit.a, len(x)):
        # H of n environments is at most log n: such an asymptote is no estimate
        summary["fit"] = (f"no reliable fit: asymptote a = {fit.a:.4g} nats is above "
                          f"log n = {np.log(len(x)):.4g}")
    else:
        table["gap"] = fit.gap
        summary.update(
            {
                "asymptote_a": fit.a,
                "a_err": fit.a_err,
                "b": fit.b,
                "c": fit.c,
                "gap_at_full_size": float(fit.gap[-1]),
            }
        )
    return finish(args, batch.skipped, summary, table)
