"""``quests-dashboard compress FILE --fraction F``: keep the most informative structures.

The structures of the file are chosen by ``--method`` (msc, fps, kmeans,
random) on the file's cached descriptors; the summary gives H, D and the overlap
of the full set with the kept subset (:func:`quests_core.analysis.compression.compress`).
``--compare`` (every method) or ``--sweep`` (more fractions) add the report
table of :func:`~quests_core.analysis.compression.compression_study`, the
Compression tab's. Every kernel call runs at ``--precision``.
``--output``: the kept structures (``.extxyz``/``.xyz``); ``--report``: the
report table (``.csv/.parquet/.json``). h is the fixed bandwidth or, with
``--bandwidth auto``, the volume rule of the whole file.

Memory: the descriptors of the file (the kept structures are streamed when
written).
"""

from __future__ import annotations

import argparse

import numpy as np

from quests_core.errors import QuestsError

from .loading import load_one, per_structure
from .output import RESULT_SUFFIXES, STRUCTURE_SUFFIXES, finish, write_table_to, wrote
from .parser import add_seed, bandwidth, batch_parser, positive_int, prepare

NAME = "compress"


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    """Register the subcommand."""
    from quests_core.analysis import compression as comp

    p = batch_parser(sub, common, NAME, files=None,
                     help="compress a dataset (msc, fps, kmeans, random) and compare methods",
                     description="Choose the structures that keep the most information; "
                     "compare methods. --output: the kept structures (.extxyz/.xyz); --report: "
                     "the report table.")
    p.add_argument("dataset", help="structure file")
    p.add_argument("--method", choices=comp.METHODS, default=comp.METHODS[0],
                   help=f"selection method (default {comp.METHODS[0]})")
    p.add_argument("--fraction", type=float, required=True, help="share of structures, (0, 1]")
    add_seed(p, "seed of random and k-means")
    p.add_argument(
        "--until-covered", action="store_true", help="msc: stop once the full set is covered"
    )
    p.add_argument("--compare", action="store_true", help="report every method")
    p.add_argument("--sweep", help="fractions for the report, e.g. 0.1,0.2,0.5")
    p.add_argument("--seeds", type=positive_int, default=3,
                   help="seeds averaged for random/k-means in the report (default 3)")
    p.add_argument("--no-gap", action="store_true", help="skip the information gap")
    p.add_argument("--report", help="report table (.csv, .parquet or .json)")
    p.set_defaults(func=run, outputs=STRUCTURE_SUFFIXES, extra_outputs={"report": RESULT_SUFFIXES})


def parse_fractions(text: str | None) -> list[float]:
    """``--sweep``: the fractions (empty when not given)."""
    if not text:
        return []
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise QuestsError(
            f"--sweep: fractions must be numbers separated by commas, got {text!r}"
        ) from None


def run(args: argparse.Namespace) -> int:
    """``compress FILE --fraction F [--method M] [--compare] [--sweep F,...]``"""
    from quests_core.analysis import compression as comp

    settings, _ = prepare(args)
    sweep = parse_fractions(args.sweep)
    if args.report and not (args.compare or sweep):
        raise QuestsError("--report writes the report of --compare or --sweep: give one")
    batch, dataset, x = load_one(args.dataset, args, settings)
    n = len(dataset)
    size = comp.fraction_to_size(args.fraction, n)
    for fraction in sweep:
        comp.fraction_to_size(fraction, n)
    h = bandwidth(settings, dataset)
    descs = per_structure(dataset, x)
    kernel = settings.kernel_kwargs()
    kept = comp.compress(descs, args.method, size, h=h, seed=settings.seed,
                         until_covered=args.until_covered, **kernel)
    m = kept.metrics
    summary = {
        "method": args.method,
        "structures": n,
        "kept_structures": m.n_structures,
        "kept_environments": m.n_envs,
        "bandwidth": h,
        "H": m.entropy,
        "D": m.diversity,
        "overlap": m.overlap,
    }
    if args.output:
        from quests_core.export import export_dataset

        export_dataset(dataset.subset(np.sort(kept.selected)), args.output, arrays=[])
        wrote(args.output)
    report = None
    if args.compare or sweep:
        report = comp.compression_study(
            descs,
            methods=comp.METHODS if args.compare else (args.method,),
            fractions=sorted({*sweep, float(args.fraction)}),
            h=h,
            seeds=tuple(range(settings.seed, settings.seed + args.seeds)),
            gap=not args.no_gap,
            **kernel,
        ).report
        write_table_to(args.report, report)
    return finish(args, batch.skipped, summary, report)
