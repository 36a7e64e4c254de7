"""``quests-dashboard report FILE... [-r REF...] -o report.html``: a report to share.

One self-contained HTML file (every script and style inline; opens offline in any
browser) with the inputs and settings, H and D per file, learning curves, the
overlap matrix, the per-frame curves of every trajectory with its jump frames and
the first one drawn coloured by dH, and per-atom dH (docs/report.md). ``--figures
DIR`` also writes every plot as PNG and SVG for papers (``--figure-size``,
``--dpi``).

The computation is the dashboard's (:func:`dashboard.pipeline.run_pipeline`, the
same numbers as its tabs and as ``quests-dashboard trajectory``) and the page is
built by :mod:`dashboard.report`, the module behind the dashboard's "Save report".
The dashboard is imported only when the command runs (as ``serve`` does), so the
other commands never import it.

FILES get the role ``--role`` (default ``trajectory``: each file's frames in order;
``test``: a set of structures, needs ``-r``); ``-r`` files are the reference (dH
against their union); without ``-r`` each file is compared with its own first frame.

Memory: the descriptors and per-atom table of every file (as the dashboard).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from quests_core.errors import QuestsError

from .parser import (
    add_reference_options,
    batch_parser,
    positive_float,
    positive_int,
    prepare,
)
from .progress import progress_bar

NAME = "report"
OUTPUTS = (".html", ".htm")


def figure_size(text: str) -> tuple[float, float]:
    """argparse type of ``--figure-size``: ``WIDTHxHEIGHT`` in inches, e.g. ``6x4``."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        w, h = (float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected WIDTHxHEIGHT in inches, e.g. 6x4, got {text!r}") from None
    if not (0.5 <= w <= 50 and 0.5 <= h <= 50):
        raise argparse.ArgumentTypeError(f"figure size {text!r}: each side 0.5 to 50 inches")
    return w, h


def add_parser(sub, common: argparse.ArgumentParser) -> None:
    """Register the subcommand."""
    p = batch_parser(
        sub,
        common,
        NAME,
        help="a self-contained HTML report (and figures for papers)",
        description="One HTML file that opens offline in any browser: inputs, settings, H "
        "and D per file, learning curves, overlap matrix, per-frame curves with the jump "
        "frames, per-atom dH. --output: the .html file. --figures DIR: every plot as "
        "PNG and SVG.",
    )
    add_reference_options(
        p, required=False, help_text="reference files (default: each file's first frame)",
        of="files")
    p.add_argument("--role", choices=("trajectory", "test"), default="trajectory",
                   help="what FILES are: trajectories (frames in order, default) or test sets "
                   "(need -r)")
    p.add_argument("--title", default="QUESTS report", help="title of the page")
    p.add_argument("--dh-scale", choices=("asinh", "linear"), default="asinh",
                   help="how dH axes are drawn (default asinh: linear within ±1 nat, "
                   "logarithmic beyond)")
    p.add_argument("--z-threshold", type=positive_float, default=5.0,
                   help="robust z-score of a jump frame (the Trajectory tab's rule; default 5)")
    p.add_argument("--exact-entropy", action="store_true",
                   help="exact H of every frame and file whatever its size")
    p.add_argument("--no-file-entropy", action="store_true",
                   help="leave out H and D per file (they read the files again)")
    g = p.add_argument_group("learning curves and overlap (as the dashboard)")
    g.add_argument("--learning-max-n", type=positive_int, default=None,
                   help="largest subset of the learning curves (default: the dashboard's)")
    g.add_argument("--learning-repeats", type=positive_int, default=None,
                   help="repeats per subset size (default: the dashboard's)")
    g.add_argument("--overlap-max-n", type=positive_int, default=None,
                   help="environments sampled per group for the overlap (default: the "
                   "dashboard's)")
    g = p.add_argument_group("figures for papers")
    g.add_argument("--figures", default=None, metavar="DIR",
                   help="also save every plot of the report in DIR")
    g.add_argument("--figure-format", default="png,svg",
                   help="comma-separated formats of --figures: png, svg (default both)")
    g.add_argument("--figure-size", type=figure_size, default=None, metavar="WxH",
                   help="figure size in inches (default 6x4)")
    g.add_argument("--dpi", type=positive_int, default=None,
                   help="dots per inch of the PNG figures (default 300)")
    p.set_defaults(func=run, outputs=OUTPUTS)


def run(args: argparse.Namespace) -> int:
    """``report FILE... [-r REF...] -o report.html``"""
    settings, suffix = prepare(args)
    if suffix is None:
        raise QuestsError("report: give the output file, e.g. -o report.html")
    formats = [f.strip().lower() for f in args.figure_format.split(",") if f.strip()]
    bad = [f for f in formats if f not in ("png", "svg")]
    if bad or not formats:
        raise QuestsError(f"--figure-format: use png and/or svg, got {args.figure_format!r}")
    for option, given in (("--format", args.format), ("--time-step", args.time_step)):
        if given:
            raise QuestsError(f"report: {option} is not supported (the dashboard's reading: "
                              "formats detected, times from the files)")
    try:
        pipeline = importlib.import_module("dashboard.pipeline")
        report = importlib.import_module("dashboard.report")
        state = importlib.import_module("dashboard.state")
        compute = importlib.import_module("dashboard.compute")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("dashboard"):
            raise QuestsError("the report needs the dashboard (dashboard missing)") from None
        raise QuestsError(f"the report needs the missing package {exc.name!r}") from None
    if args.cache_dir:
        os.environ["QUESTS_CACHE_DIR"] = args.cache_dir
    if args.no_cache:
        compute._CACHE = False  # the dashboard's shared cache: none for this run
    specs = _file_specs(args, state)
    options = {"exact_entropy": bool(args.exact_entropy),
               "lammps_timestep_fs": args.lammps_timestep_fs}
    for name in ("learning_max_n", "learning_repeats", "overlap_max_n"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    run_settings = state.RunSettings(core=settings).replace(**options)
    bar = progress_bar(args, desc="report", total=100, unit="%",
                       bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
    try:
        def computing(fraction: float, text: str) -> None:
            bar.set_postfix_str(text[:60], refresh=False)
            bar.n = round(80 * fraction)
            bar.refresh()

        results = pipeline.run_pipeline(specs, run_settings, progress=computing,
                                        n_threads=settings.threads)

        def building(fraction: float, text: str) -> None:
            bar.set_postfix_str(text[:60], refresh=False)
            bar.n = 80 + round(20 * fraction)
            bar.refresh()

        built = report.build_report(
            results, run_settings, title=args.title, dh_mode=args.dh_scale,
            z_threshold=args.z_threshold, entropy=not args.no_file_entropy,
            exact_entropy=args.exact_entropy, progress=building, n_threads=settings.threads)
    finally:
        bar.close()
    for text in results.warnings:
        print(f"warning: {' '.join(text.split())}", file=sys.stderr)
    built.write(args.output)
    print(f"wrote {args.output} ({built.size / 1e6:.2f} MB)")
    for source, traj in built.data.get("trajectories", {}).items():
        flagged = ", ".join(map(str, traj["flagged_frames"])) or "none"
        print(f"{source}: {len(traj['frame'])} frames, jump frames (0-based): {flagged}")
    if args.figures:
        paths = built.save_figures(args.figures, formats=formats,
                                   size=args.figure_size or report.FIGURE_SIZE,
                                   dpi=args.dpi or report.FIGURE_DPI)
        print(f"wrote {len(paths)} figures to {args.figures}")
    return 0


def _file_specs(args: argparse.Namespace, state) -> list:
    """The dashboard's file entries: FILES with ``--role``, ``-r`` files as reference."""
    app = state.AppState()
    for path in args.files:
        _exists(path)
        app.add_file(path, os.path.basename(path) or path, args.role, index=args.index,
                     type_map=args.type_map or "", timestep_fs=args.lammps_timestep_fs,
                     topology=args.topology or "")
    for path in args.reference or []:
        _exists(path)
        app.add_file(path, os.path.basename(path) or path, "reference",
                     index=args.reference_index, type_map=args.type_map or "",
                     timestep_fs=args.lammps_timestep_fs, topology=args.topology or "")
    return list(app.files)


def _exists(path: str) -> None:
    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "no such file"
        raise QuestsError(f"{path}: {what}")
