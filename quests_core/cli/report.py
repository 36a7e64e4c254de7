"""``quests-dashboard report FILE... [-r REF...] -o report.html``: a report to share.

One self-contained HTML file (every script and style inline; opens offline in any
browser) with the inputs and settings, H and D per file, learning curves, the
overlap matrix, the per-frame curves of every trajectory with its jump frames and
the first one drawn coloured by dH, and per-atom dH (docs/report.md). ``--figures
DIR`` also writes every plot as PNG and SVG for papers (``--figure-size``,
``--dpi``). Analysis sections: ``--nucleation`` (solid: ``--solid-reference``, else
the ``-r`` files), ``--compression DATASET``, ``--active-learning DATASET``,
``--uncertainty TEST``, with the numbers of ``nucleation --fit``, ``compress --compare
--sweep``, ``active-learning`` and ``uq``.

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
    add_seed,
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
    g = p.add_argument_group(
        "nucleation (as 'quests-dashboard nucleation TRAJ -r SOLID --fit')",
        "solid-like clusters of every trajectory against a solid reference, the largest "
        "cluster per frame with the critical band, the pre-nucleation frames' cluster-size "
        "distribution and its CNT fit; CNT constants default to the paper's Cu values (Cu "
        "trajectories only)")
    g.add_argument("--nucleation", action="store_true",
                   help="add the nucleation section (solid: --solid-reference, else the -r "
                   "files)")
    g.add_argument("--solid-reference", nargs="+", default=None, metavar="SOLID",
                   help="solid reference files (frames: --reference-index); implies "
                   "--nucleation")
    g.add_argument("--t-melt", type=positive_float, help="melting temperature, K")
    g.add_argument("--latent-heat", type=positive_float, help="latent heat, kJ/mol")
    g.add_argument("--v-atom", type=positive_float,
                   help="volume per atom of the solid for the critical band, Å^3/atom")
    g.add_argument("--gamma-min", type=positive_float, help="interfacial energy, J/m^2")
    g.add_argument("--gamma-max", type=positive_float, help="interfacial energy, J/m^2")
    g.add_argument("--fit-weights", choices=("none", "poisson"), default="none",
                   help="CNT fit: none (unweighted least squares on log N, the paper's; "
                   "default) or poisson")
    g.add_argument("--fit-v-atom", type=positive_float, default=None,
                   help="volume per atom that sizes the clusters of the CNT fit, Å^3/atom "
                   "(default: the constants', Cu 11.78)")
    g = p.add_argument_group(
        "compression (as 'quests-dashboard compress FILE --fraction F --method M --compare "
        "--sweep ... --seeds N')")
    g.add_argument("--compression", metavar="DATASET", default=None,
                   help="add the compression section of this structure file")
    g.add_argument("--compression-fraction", type=float, default=0.2,
                   help="share of structures kept by --compression-method (default 0.2)")
    g.add_argument("--compression-method", choices=("msc", "fps", "kmeans", "random"),
                   default="msc", help="method of the summary (default msc)")
    g.add_argument("--compression-methods", default="msc,fps,kmeans,random",
                   help="methods compared in the plots (default all four: --compare)")
    g.add_argument("--compression-sweep", default="0.1,0.2,0.3,0.5,0.7,1.0",
                   help="fractions of the plots (default the Compression tab's)")
    g.add_argument("--compression-seeds", type=positive_int, default=3,
                   help="seeds averaged for random and k-means (default 3; --seed: the first)")
    g.add_argument("--compression-no-gap", action="store_true",
                   help="skip the information gap")
    g = p.add_argument_group("active learning (as 'quests-dashboard active-learning FILE')")
    g.add_argument("--active-learning", metavar="DATASET", default=None,
                   help="add the active-learning section of this structure file")
    g.add_argument("--generation-key", default="generation",
                   help="info key of the generation (default 'generation')")
    g = p.add_argument_group(
        "uncertainty (as 'quests-dashboard uq TEST (--reference TRAIN... | --reference-label L) "
        "(--forces PRED REF | --error-key KEY)')",
        "dH of the test atoms against a training set versus their model error: the "
        "Uncertainty tab's plot (error against dH, running average, high-error threshold) "
        "and uq's numbers (recall, precision, threshold, ...); every frame of TEST")
    g.add_argument("--uncertainty", metavar="TEST", default=None,
                   help="add the uncertainty section of this file (with per-atom errors or "
                   "two force arrays)")
    g.add_argument("--uncertainty-reference", nargs="+", metavar="TRAIN", default=None,
                   help="training structure files or descriptor files (.npz/.npy) "
                   "(uq's --reference)")
    g.add_argument("--uncertainty-reference-label", metavar="LABEL", default=None,
                   help="training structures with this label (from TEST without "
                   "--uncertainty-reference)")
    g.add_argument("--uncertainty-test-label", metavar="LABEL", default=None,
                   help="keep the test structures with this label (default: every structure "
                   "of TEST, as uq)")
    g.add_argument("--uncertainty-forces", nargs=2, metavar=("PRED", "REF"), default=None,
                   help="two per-atom force arrays (error: the norm of their difference)")
    g.add_argument("--uncertainty-error-key", metavar="KEY", default=None,
                   help="per-atom error array (n,) or error vectors (n, 3)")
    g.add_argument("--uncertainty-bins", type=positive_int, default=None,
                   help="dH bins of the running average (default uq's, 20)")
    g.add_argument("--uncertainty-window", type=positive_float, default=None,
                   help="half-width of the running mean in bins (default uq's, 0.75)")
    g.add_argument("--uncertainty-error-threshold", type=positive_float, default=None,
                   help="high error above this (default: the 0.9 quantile of the errors)")
    if not any(a.dest == "seed" for a in p._actions):
        add_seed(p, "seed of the compression's random and k-means")
    g = p.add_argument_group("figures for papers")
    g.add_argument("--figures", default=None, metavar="DIR",
                   help="also save every plot of the report in DIR")
    g.add_argument("--figure-format", default="png,svg",
                   help="comma-separated formats of --figures: png, svg (default both)")
    g.add_argument("--figure-size", type=figure_size, default=None, metavar="WxH",
                   help="figure size in inches (default 6x4; stacked panels 6 x 2.2 per "
                   "panel)")
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
    nucleation = bool(args.nucleation or args.solid_reference)
    if nucleation and not (args.solid_reference or args.reference):
        raise QuestsError("--nucleation needs a solid reference: give --solid-reference "
                          "SOLID or -r SOLID")
    if (args.gamma_min is None) != (args.gamma_max is None):
        raise QuestsError("give both --gamma-min and --gamma-max (J/m^2)")
    if args.uncertainty:
        if not args.uncertainty_reference and args.uncertainty_reference_label is None:
            raise QuestsError("--uncertainty: give the training set: --uncertainty-reference "
                              "TRAIN or --uncertainty-reference-label LABEL")
        if bool(args.uncertainty_forces) == bool(args.uncertainty_error_key):
            raise QuestsError("--uncertainty: give --uncertainty-forces PRED REF or "
                              "--uncertainty-error-key KEY (one of them)")
    analysis_files = [f for f in (args.compression, args.active_learning, args.uncertainty,
                                  *(args.uncertainty_reference or [])) if f]
    for path in analysis_files:
        _exists(path)
    methods = [m.strip() for m in args.compression_methods.split(",") if m.strip()]
    if args.compression and (not methods or set(methods) - {"msc", "fps", "kmeans",
                                                            "random"}):
        raise QuestsError(f"--compression-methods: use msc, fps, kmeans, random, got "
                          f"{args.compression_methods!r}")
    try:
        sweep = [float(t) for t in args.compression_sweep.split(",") if t.strip()]
    except ValueError:
        raise QuestsError(f"--compression-sweep: fractions separated by commas, got "
                          f"{args.compression_sweep!r}") from None
    specs = _file_specs(args, state, nucleation)
    options = {"exact_entropy": bool(args.exact_entropy),
               "lammps_timestep_fs": args.lammps_timestep_fs}
    for name, option in (("t_melt", "cnt_t_melt"), ("latent_heat", "cnt_latent_heat"),
                         ("v_atom", "cnt_v_atom"), ("gamma_min", "cnt_gamma_min"),
                         ("gamma_max", "cnt_gamma_max")):
        if getattr(args, name) is not None:
            options[option] = getattr(args, name)
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
        for name, nuc in list(results.nucleations.items()):  # the chosen fit
            results.nucleations[name] = pipeline.fit_nucleation(nuc, args.fit_weights,
                                                                args.fit_v_atom)
        analyses = []
        if args.compression:
            bar.set_postfix_str("compression", refresh=True)
            spec = _spec(state, args.compression, "test", args)
            analyses.append(report.compression_section(
                spec, run_settings, fraction=args.compression_fraction,
                method=args.compression_method, methods=methods, fractions=sweep,
                seeds=args.compression_seeds, gap=not args.compression_no_gap,
                n_threads=settings.threads))
        if args.active_learning:
            bar.set_postfix_str("active learning", refresh=True)
            spec = _spec(state, args.active_learning, "test", args)
            analyses.append(report.active_learning_section(
                spec, run_settings, key=args.generation_key, n_threads=settings.threads))

        if args.uncertainty:
            bar.set_postfix_str("uncertainty", refresh=True)
            analyses.append(report.uncertainty_section(
                _spec(state, args.uncertainty, "test", args), run_settings,
                references=[_spec(state, path, "reference", args)
                            for path in args.uncertainty_reference or []],
                reference_label=args.uncertainty_reference_label,
                test_label=args.uncertainty_test_label,
                forces=tuple(args.uncertainty_forces) if args.uncertainty_forces else None,
                error_key=args.uncertainty_error_key, n_bins=args.uncertainty_bins,
                window=args.uncertainty_window,
                error_threshold=args.uncertainty_error_threshold, n_threads=settings.threads))

        def building(fraction: float, text: str) -> None:
            bar.set_postfix_str(text[:60], refresh=False)
            bar.n = 80 + round(20 * fraction)
            bar.refresh()

        built = report.build_report(
            results, run_settings, title=args.title, dh_mode=args.dh_scale,
            z_threshold=args.z_threshold, entropy=not args.no_file_entropy,
            exact_entropy=args.exact_entropy, progress=building, n_threads=settings.threads,
            analyses=analyses)
    finally:
        bar.close()
    for text in results.warnings:
        print(f"warning: {' '.join(text.split())}", file=sys.stderr)
    built.write(args.output)
    print(f"wrote {args.output} ({built.size / 1e6:.2f} MB)")
    for source, traj in built.data.get("trajectories", {}).items():
        flagged = ", ".join(map(str, traj["flagged_frames"])) or "none"
        print(f"{source}: {len(traj['frame'])} frames, jump frames (0-based): {flagged}")
    for source, nuc in built.data.get("nucleation", {}).items():
        fit = nuc["fit"]
        words = (f"CNT fit gamma_SL {fit['gamma_SL (J/m^2)']:.6g} J/m^2" if fit else
                 nuc["fit_error"] or "no fit")
        print(f"{source}: largest solid-like cluster {max(nuc['largest_cluster'], default=0)}"
              f" atoms, {len(nuc['pooled_frames'])} pooled frames, {words}")
    for source, comp in built.data.get("compression", {}).items():
        s = comp["summary"]
        print(f"{source}: compression {s['method']} keeps {s['kept_structures']} structures, "
              f"H {s['H']:.6g}, D {s['D']:.6g}, overlap {s['overlap']:.6g}")
    for source, al in built.data.get("active_learning", {}).items():
        print(f"{source}: {al['summary']['generations']} generations")
    for source, unc in built.data.get("uncertainty", {}).items():
        u = {k: ("nan" if v is None else f"{v:.6g}") for k, v in unc["summary"].items()}
        print(f"{source}: uncertainty recall {u['recall']}, precision {u['precision']}, "
              f"error threshold {u['error_threshold']} ({u['high_error_atoms']} high-error "
              f"atoms), fraction dH > 0 {u['frac_dH_positive']}")
    if args.figures:
        paths = built.save_figures(args.figures, formats=formats,
                                   size=args.figure_size,
                                   dpi=args.dpi or report.FIGURE_DPI)
        print(f"wrote {len(paths)} figures to {args.figures}")
    return 0


def _spec(state, path: str, role: str, args: argparse.Namespace):
    """The dashboard's entry of one analysed file (every frame, as its command without
    ``--index``; ``--index`` selects the frames of FILES only)."""
    app = state.AppState()
    app.add_file(path, os.path.basename(path) or path, role, index=":",
                 type_map=args.type_map or "", timestep_fs=args.lammps_timestep_fs,
                 topology=args.topology or "",
                 topology_format=args.topology_format or "")
    return app.files[0]


def _file_specs(args: argparse.Namespace, state, nucleation: bool = False) -> list:
    """The dashboard's file entries: FILES with ``--role``, ``-r`` files as reference and
    with ``nucleation`` the solid reference (``--solid-reference``, else the ``-r`` files
    once more, named ``NAME (solid reference)``)."""
    app = state.AppState()
    for path in args.files:
        _exists(path)
        app.add_file(path, os.path.basename(path) or path, args.role, index=args.index,
                     type_map=args.type_map or "", timestep_fs=args.lammps_timestep_fs,
                     topology=args.topology or "",
                     topology_format=args.topology_format or "")
    for path in args.reference or []:
        _exists(path)
        app.add_file(path, os.path.basename(path) or path, "reference",
                     index=args.reference_index, type_map=args.type_map or "",
                     timestep_fs=args.lammps_timestep_fs, topology=args.topology or "",
                     topology_format=args.topology_format or "")
    if nucleation:
        own = args.solid_reference is not None
        for path in args.solid_reference or args.reference:
            _exists(path)
            name = os.path.basename(path) or path
            if not own or name in {f.name for f in app.files}:
                name = f"{name} (solid reference)"
            app.add_file(path, name, "solid reference", index=args.reference_index,
                         type_map=args.type_map or "", timestep_fs=args.lammps_timestep_fs,
                         topology=args.topology or "",
                     topology_format=args.topology_format or "")
    return list(app.files)


def _exists(path: str) -> None:
    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "no such file"
        raise QuestsError(f"{path}: {what}")
