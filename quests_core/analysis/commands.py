"""CLI subcommands of the science analyses.

:func:`register` adds ``nucleation``, ``compress``, ``active-learning``, ``uq``
and ``phase-entropy`` to the ``quests-dashboard`` argparse parser. Every
subcommand sets ``func=handler`` with ``handler(args) -> int``; handlers raise
:class:`~quests_core.errors.QuestsError` for bad input, which the CLI prints as
one line on stderr with exit status 1.

Reference descriptors may be given as structure files, as ``.npz`` files
holding ``descriptors`` (or ``x``), ``k`` and ``cutoff`` (see
:func:`save_descriptors`; ``k`` and ``cutoff`` must match the command's), or
as bare ``.npy`` arrays (only the width 2k - 1 is checked).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from quests_core.errors import QuestsError

DEFAULT_K = 32
DEFAULT_CUTOFF = 5.0
DEFAULT_BANDWIDTH = 0.015


# ---------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _add_descriptor_options(p: argparse.ArgumentParser, bandwidth: bool = True) -> None:
    g = p.add_argument_group("descriptors")
    g.add_argument("-k", type=int, default=DEFAULT_K, help="neighbours per environment (32)")
    g.add_argument("--cutoff", type=float, default=DEFAULT_CUTOFF, help="cutoff in Å (5.0)")
    if bandwidth:
        g.add_argument(
            "--bandwidth", type=float, default=DEFAULT_BANDWIDTH, help="kernel h in 1/Å (0.015)"
        )
    g.add_argument("--threads", type=int, default=None, help="threads (default: all)")


def _load(path: str, index: str = ":", name: str | None = None, lazy: bool = False):
    from quests_core.dataset import Dataset

    ds = Dataset.from_files(path, index=index, name=name, lazy=lazy)
    if len(ds) == 0:
        raise QuestsError(f"no structures selected by index {index!r}", source=path)
    return ds


def save_descriptors(path: str | Path, x: np.ndarray, k: int, cutoff: float) -> None:
    """Write descriptors with their settings to an ``.npz`` file."""
    np.savez(path, descriptors=np.asarray(x), k=int(k), cutoff=float(cutoff))


def load_descriptors(path: str, k: int, cutoff: float) -> np.ndarray:
    """Descriptors from ``.npz`` (checking its ``k`` and ``cutoff``) or ``.npy`` files.

    A bare ``.npy`` array carries no settings; only its width is checked
    against ``2k - 1``.
    """
    from quests_core.analysis import check_same_settings

    try:
        data = np.load(path)
    except (OSError, ValueError) as exc:
        raise QuestsError(f"cannot read descriptor file: {exc}", source=path) from exc
    if isinstance(data, np.ndarray):  # a bare .npy (``quests-dashboard descriptors -o x.npy``)
        data = {"descriptors": data}
    key = "descriptors" if "descriptors" in data else "x" if "x" in data else None
    if key is None:
        raise QuestsError("no 'descriptors' array in the file", source=path)
    x = np.asarray(data[key])
    settings = {n: data[n].item() for n in ("k", "cutoff") if n in data}
    try:
        check_same_settings({"k": k, "cutoff": cutoff}, settings, reference_name="the reference")
    except QuestsError as exc:
        raise QuestsError(str(exc), source=path) from None
    if x.ndim != 2 or len(x) == 0:
        raise QuestsError(f"descriptor array has shape {x.shape}, expected (n, d)", source=path)
    if "k" not in settings and x.shape[1] != 2 * k - 1:
        raise QuestsError(
            f"descriptor dimension {x.shape[1]} does not match k={k} ({2 * k - 1})", source=path
        )
    return x


def _descriptors(structures: Sequence, args: argparse.Namespace) -> np.ndarray:
    import quests_core as qc
    from quests_core.io import locate_error

    structures = list(structures)
    try:
        x = qc.descriptors(structures, k=args.k, cutoff=args.cutoff, n_threads=args.threads)
    except QuestsError as exc:  # name the file and frame of the structure
        raise locate_error(exc, structures) from None
    return np.asarray(x)


def _reference_descriptors(path: str, index: str, args: argparse.Namespace) -> np.ndarray:
    if path.endswith((".npz", ".npy")):
        if not Path(path).exists():
            raise QuestsError("file not found", source=path)
        return load_descriptors(path, args.k, args.cutoff)
    ds = _load(path, index)
    return _descriptors(ds.structures, args)


def _show_table(df: pd.DataFrame, path: str | None = None) -> None:
    """Print a result table (4 significant digits) and write it to ``path`` if given."""
    print(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    _write_table(df, path)


def _write_table(df: pd.DataFrame, path: str | None) -> None:
    if not path:
        return
    from quests_core.export import write_table

    _say(f"wrote {write_table(df, path)}")


def _write_extxyz(path: str, structures: Iterable, arrays: dict[str, np.ndarray]) -> None:
    """Write structures with extra per-atom arrays (concatenated over structures)."""
    from quests_core.export import write_extxyz

    _say(f"wrote {write_extxyz(path, structures, arrays)}")


def _parse_fractions(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError as exc:
        raise QuestsError(f"fractions must be numbers separated by commas, got {text!r}") from exc


def _frames_selection(text: str | None, n: int) -> list[int]:
    """Frame positions chosen by an index text (``"5"``, ``"10:"``, ``"::2"``)."""
    if text is None:
        return list(range(n))
    from quests_core.io import parse_index

    idx = parse_index(text)
    if isinstance(idx, int):
        if not -n <= idx < n:
            raise QuestsError(f"frame {idx} is out of range (trajectory has {n})")
        return [idx % n]
    frames = list(range(n))[idx]
    if not frames:
        raise QuestsError(f"no frames selected by {text!r} (trajectory has {n})")
    return frames


# ---------------------------------------------------------------------------
# nucleation
# ---------------------------------------------------------------------------


def _cnt_constants(args: argparse.Namespace, species: Sequence[str], source: str):
    """The CNT constants of the options; the paper's Cu values only for a Cu trajectory."""
    from quests_core.analysis import cnt

    element = species[0] if len(species) == 1 else None
    gamma = None
    if args.gamma_min is not None or args.gamma_max is not None:
        if args.gamma_min is None or args.gamma_max is None:
            raise QuestsError("give both --gamma-min and --gamma-max (J/m^2)")
        gamma = (args.gamma_min, args.gamma_max)
    try:
        return cnt.cnt_constants(
            element, t_melt=args.t_melt, latent_heat=args.latent_heat, gamma_range=gamma,
            v_atom=args.v_atom, density=args.density, number_density=args.number_density,
        )
    except QuestsError as exc:
        hint = (str(exc).replace("the density (g/cm^3)", "--density (g/cm^3)")
                .replace("the number density (atoms/Å^3)", "--number-density (atoms/Å^3)")
                .replace("the volume per atom (Å^3)", "--v-atom (Å^3)")
                .replace("the melting temperature (K)", "--t-melt (K)")
                .replace("the latent heat (kJ/mol)", "--latent-heat (kJ/mol)")
                .replace("the interfacial energy range (J/m^2)", "--gamma-min/--gamma-max (J/m^2)"))
        raise QuestsError(hint, source=source) from None


def _nucleation(args: argparse.Namespace) -> int:
    """Largest solid-like cluster per frame, size distribution, CNT band and fit.

    The frames chosen by --frames are pooled: their size distribution, one
    critical-size band at their mean temperature (mean undercooling) and the
    CNT fit at that temperature.
    """
    from quests_core.analysis import clusters as cl
    from quests_core.analysis import cnt

    if not args.reference:
        raise QuestsError("missing reference: give --reference SOLID")
    # stream the trajectory: one frame in memory at a time
    traj = _load(args.trajectory, args.index, lazy=True)
    constants = _cnt_constants(args, traj.species, args.trajectory)
    ref = _reference_descriptors(args.reference, args.reference_index, args)
    frames = traj.iter_structures()
    if not args.quiet:
        from tqdm.auto import tqdm

        frames = tqdm(frames, total=len(traj), desc="frames", file=sys.stderr)
    dhs, clusters = [], []
    from quests_core.io import locate_error

    for atoms in frames:
        try:
            dh = cl.solid_like_delta_entropy(
                [atoms], ref, k=args.k, cutoff=args.cutoff, h=args.bandwidth,
                n_threads=args.threads,
            )[0]
        except QuestsError as exc:  # name the file and frame of the structure
            raise locate_error(exc, [atoms]) from None
        clusters.append(
            cl.atoms_clusters(
                atoms, dh <= args.threshold, cutoff=args.cluster_cutoff, method=args.clusters
            )
        )
        dhs.append(dh)
    res = cl.TrajectoryClusters.from_clusters(clusters)
    table = traj.frames[["structure", "frame", "time", "temperature", "n_atoms"]].copy()
    table["n_solid"] = res.n_solid
    table["largest_cluster"] = res.largest
    table["mean_dH"] = [float(np.mean(d)) for d in dhs]
    _show_table(table, args.output)

    chosen = _frames_selection(args.frames, len(traj))
    dist = cl.cluster_size_distribution(res.clusters, chosen)
    dist_df = pd.DataFrame({"size": dist.sizes, "count": dist.counts, "per_frame": dist.per_frame})
    print(f"\ncluster sizes over {dist.n_frames} frames ({args.clusters} components):")
    _show_table(dist_df, args.distribution)

    temps = table["temperature"].to_numpy(float)
    if not np.all(np.isfinite(temps[chosen])):
        if args.fit:
            raise QuestsError("the CNT fit needs the temperature of every chosen frame",
                              source=args.trajectory)
        _say("no temperature for every pooled frame: no critical-size band")
        return _nucleation_extxyz(args, traj, dhs, res)
    t_pool = cnt.pooled_temperature(temps, chosen)
    band = cnt.pooled_critical_band(temps, constants.gamma_range, chosen, **constants.kwargs())
    print(
        f"\nCNT critical size at the mean temperature of the {len(chosen)} pooled frames, "
        f"T = {t_pool:.1f} K (T_m = {constants.t_melt:g} K, V_atom = {constants.v_atom:.4g} "
        f"Å^3/atom, gamma_SL = {constants.gamma_range[0]:g}-{constants.gamma_range[1]:g} J/m^2): "
        f"n* = {band.n_min[0]:.4g}-{band.n_max[0]:.4g} atoms, "
        f"r* = {band.r_min[0]:.4g}-{band.r_max[0]:.4g} Å"
    )
    if args.fit:
        fit = cnt.fit_cnt_distribution(dist.sizes, dist.counts, t_pool,
                                       v_atom=constants.v_atom, weights=args.weights)
        print(
            f"\nCNT fit at T = {t_pool:.1f} K ({fit.weights} weights): "
            f"N0 = {fit.n0:.4g} ± {fit.n0_err:.2g}, "
            f"dg_SL = {fit.dg_sl:.4g} ± {fit.dg_sl_err:.2g} eV/Å^3 "
            f"({fit.dg_sl_per_atom:.4g} eV/atom), "
            f"gamma_SL = {fit.gamma_sl_j_m2:.4g} ± {fit.gamma_sl_err_j_m2:.2g} J/m^2"
        )
    return _nucleation_extxyz(args, traj, dhs, res)


def _nucleation_extxyz(args: argparse.Namespace, traj, dhs: list, res) -> int:
    if args.extxyz:
        dh_all = np.concatenate(dhs) if dhs else np.zeros(0)
        _write_extxyz(args.extxyz, traj.iter_structures(), {"dH": dh_all, "cluster": res.labels()})
    return 0


def _add_nucleation(sub) -> None:
    from quests_core.analysis import clusters as cl
    from quests_core.analysis import cnt

    p = sub.add_parser(
        "nucleation",
        help="solid-like clusters per frame (dH <= 0 against a solid) and CNT",
        description=_nucleation.__doc__,
    )
    p.add_argument("trajectory", help="trajectory file")
    p.add_argument("--reference", required=True, help="solid reference (structures or .npz)")
    p.add_argument("--index", default=":", help="frames of the trajectory (start:stop:step)")
    p.add_argument("--reference-index", default=":", help="frames of the reference")
    _add_descriptor_options(p)
    g = p.add_argument_group("clusters")
    g.add_argument("--threshold", type=float, default=0.0, help="solid-like if dH <= this (0)")
    g.add_argument(
        "--cluster-cutoff", type=float, default=cl.DEFAULT_CLUSTER_CUTOFF, help="edge in Å (3.0)"
    )
    g.add_argument("--clusters", choices=cl.CLUSTER_METHODS, default="connected")
    g.add_argument("--frames", default=None,
                   help="frames pooled in the size distribution, band and fit (default: all)")
    c = p.add_argument_group(
        "classical nucleation theory",
        "material constants; the defaults are the paper's Cu EAM values and apply only to a "
        "Cu trajectory: give them for any other",
    )
    c.add_argument("--t-melt", type=float, help=f"melting temperature, K (Cu: {cnt.CU_T_MELT:g})")
    c.add_argument("--latent-heat", type=float,
                   help=f"latent heat of melting, kJ/mol (Cu: {cnt.CU_LATENT_HEAT:g})")
    vol = c.add_mutually_exclusive_group()
    vol.add_argument("--v-atom", type=float,
                     help=f"volume per atom of the solid, Å^3/atom (Cu: {cnt.CU_V_ATOM:g})")
    vol.add_argument("--density", type=float, help="mass density of the solid, g/cm^3")
    vol.add_argument("--number-density", type=float, help="atoms per Å^3 of the solid")
    c.add_argument("--gamma-min", type=float,
                   help=f"interfacial energy, J/m^2 (Cu: {cnt.CU_GAMMA_SL_RANGE[0]:g})")
    c.add_argument("--gamma-max", type=float,
                   help=f"interfacial energy, J/m^2 (Cu: {cnt.CU_GAMMA_SL_RANGE[1]:g})")
    c.add_argument("--fit", action="store_true", help="fit the size distribution to CNT")
    c.add_argument("--weights", choices=cnt.FIT_WEIGHTS, default=cnt.FIT_WEIGHTS[0],
                   help="CNT fit: poisson (count-weighted least squares on log N, the "
                        "maximum-likelihood approximation; default) or none (unweighted)")
    o = p.add_argument_group("output")
    o.add_argument("-o", "--output", help="per-frame table (.csv or .parquet)")
    o.add_argument("--distribution", help="cluster-size distribution (.csv or .parquet)")
    o.add_argument("--extxyz", help="trajectory with per-atom dH and cluster ids")
    o.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_nucleation)


# ---------------------------------------------------------------------------
# compression
# ---------------------------------------------------------------------------


def _compress(args: argparse.Namespace) -> int:
    """Choose structures that keep the most information; compare methods."""
    from quests_core.analysis import compression as comp

    ds = _load(args.dataset, args.index)
    n = len(ds)
    size = comp.fraction_to_size(args.fraction, n)
    sweep = _parse_fractions(args.sweep) if args.sweep else []
    for f in sweep:
        comp.fraction_to_size(f, n)
    structures = ds.structures
    descs = [_descriptors([s], args) for s in structures]
    selected = comp.select_structures(
        descs,
        args.method,
        size,
        h=args.bandwidth,
        seed=args.seed,
        until_covered=args.until_covered,
        n_threads=args.threads,
    )
    m = comp.subset_metrics(descs, selected, h=args.bandwidth, n_threads=args.threads)
    print(
        f"{args.method}: kept {m.n_structures} of {n} structures ({m.n_envs} environments); "
        f"H = {m.entropy:.4f} nats, D = {m.diversity:.4f}, overlap with full set = {m.overlap:.4f}"
    )
    if args.output:
        kept = [structures[i] for i in sorted(selected.tolist())]
        _write_extxyz(args.output, kept, {})
    fractions = sorted(set(sweep + [float(args.fraction)]))
    if args.compare or sweep:
        methods = comp.METHODS if args.compare else (args.method,)
        report = comp.compression_report(
            descs,
            methods=methods,
            fractions=fractions,
            h=args.bandwidth,
            seeds=tuple(range(args.seed, args.seed + args.seeds)),
            gap=not args.no_gap,
            n_threads=args.threads,
        )
        _show_table(report, args.report)
    return 0


def _add_compress(sub) -> None:
    from quests_core.analysis import compression as comp

    p = sub.add_parser(
        "compress",
        help="compress a dataset (msc, fps, kmeans, random) and compare methods",
        description=_compress.__doc__,
    )
    p.add_argument("dataset", help="structure file")
    p.add_argument("--index", default=":", help="structures to use (start:stop:step)")
    p.add_argument("--method", choices=comp.METHODS, default="msc")
    p.add_argument("--fraction", type=float, required=True, help="share of structures, (0, 1]")
    p.add_argument("--seed", type=int, default=0, help="seed of random and k-means")
    p.add_argument(
        "--until-covered", action="store_true", help="msc: stop once the full set is covered"
    )
    p.add_argument("-o", "--output", help="compressed dataset (.extxyz)")
    p.add_argument("--compare", action="store_true", help="report every method")
    p.add_argument("--sweep", help="fractions for the report, e.g. 0.1,0.2,0.5")
    p.add_argument("--seeds", type=int, default=3, help="seeds averaged for random/k-means")
    p.add_argument("--no-gap", action="store_true", help="skip the information gap")
    p.add_argument("--report", help="report table (.csv or .parquet)")
    _add_descriptor_options(p)
    p.set_defaults(func=_compress)


# ---------------------------------------------------------------------------
# active learning
# ---------------------------------------------------------------------------


def _active_learning(args: argparse.Namespace) -> int:
    """Novelty of each generation against earlier ones; H and D of the union."""
    from quests_core.analysis import active_learning as al

    ds = _load(args.dataset, args.index)
    structures = ds.structures
    gens = al.generation_labels(structures, args.generation_key)
    x = _descriptors(structures, args)
    labels = np.repeat(gens, [len(s) for s in structures])
    report = al.active_learning_report(x, labels, h=args.bandwidth, n_threads=args.threads)
    _show_table(report, args.output)
    return 0


def _add_active_learning(sub) -> None:
    p = sub.add_parser(
        "active-learning",
        help="novelty per generation and information of the cumulative dataset",
        description=_active_learning.__doc__,
    )
    p.add_argument("dataset", help="structure file with a generation per structure")
    p.add_argument("--generation-key", default="generation", help="info key of the generation")
    p.add_argument("--index", default=":", help="structures to use (start:stop:step)")
    p.add_argument("-o", "--output", help="report table (.csv or .parquet)")
    _add_descriptor_options(p)
    p.set_defaults(func=_active_learning)


# ---------------------------------------------------------------------------
# uncertainty versus error
# ---------------------------------------------------------------------------


def _atom_array(ds, name: str) -> np.ndarray:
    if name in ds.arrays:
        return np.asarray(ds.arrays[name], dtype=float)
    structures = ds.structures
    parts = []
    for i, atoms in enumerate(structures):
        if name in atoms.arrays:
            parts.append(np.asarray(atoms.arrays[name], dtype=float))
        elif name == "forces" and atoms.calc is not None and "forces" in atoms.calc.results:
            parts.append(np.asarray(atoms.calc.results["forces"], dtype=float))
        else:
            raise QuestsError(f"per-atom array {name!r} missing", source=ds.name, index=i)
    return np.concatenate(parts)


def _uq(args: argparse.Namespace) -> int:
    """dH of test atoms against a training set versus their model error."""
    from quests_core.analysis import check_same_descriptor
    from quests_core.analysis import uncertainty as uq

    if not args.reference and args.reference_label is None:
        raise QuestsError("missing reference: give --reference TRAIN or --reference-label")
    full = _load(args.test, args.index)
    test = full
    if args.test_label is not None:
        test = full.select(label=args.test_label)
        if len(test) == 0:
            raise QuestsError(f"no structure with label {args.test_label!r}", source=args.test)
    if args.reference and args.reference.endswith((".npz", ".npy")):
        x_ref = _reference_descriptors(args.reference, ":", args)
    else:
        ref = _load(args.reference, args.reference_index) if args.reference else full
        if args.reference_label is not None:
            ref = ref.select(label=args.reference_label)
        if len(ref) == 0:
            raise QuestsError(
                f"no reference structure with label {args.reference_label!r}",
                source=args.reference or args.test,
            )
        x_ref = _descriptors(ref.structures, args)

    if args.error_key:
        err = _atom_array(test, args.error_key)
        if err.ndim == 2 and err.shape[1] == 3:
            err = np.linalg.norm(err, axis=1)
        elif err.ndim != 1:
            raise QuestsError(
                f"per-atom array {args.error_key!r} has shape {err.shape}; expected (n,) or (n, 3)",
                source=args.test,
            )
    elif args.forces:
        pred, true = args.forces
        err = uq.force_errors(_atom_array(test, pred), _atom_array(test, true))
    else:
        raise QuestsError("give --error-key KEY or --forces PRED REF")

    x_test = _descriptors(test.structures, args)
    check_same_descriptor(x_test, x_ref, reference_name="reference")
    if len(err) != len(x_test):
        raise QuestsError(f"{len(err)} errors for {len(x_test)} atoms", source=args.test)
    import quests_core as qc

    dh = np.asarray(qc.delta_entropy(x_test, x_ref, args.bandwidth, n_threads=args.threads))
    res = uq.uncertainty_vs_error(
        dh, err, n_bins=args.bins, window=args.window, threshold=args.error_threshold
    )
    bins = pd.DataFrame(
        {
            "dH_center": res.running.centers,
            "mean_error": res.running.mean,
            "std_error": res.running.std,
            "count": res.running.count,
        }
    )
    _show_table(bins)
    r = res.recall
    print(
        f"\n{len(dh)} atoms, {r.frac_flagged:.1%} with dH > 0; high error = error > "
        f"{r.threshold:.4g} ({r.n_high} atoms); dH > 0 catches {r.recall:.1%} of them "
        f"(precision {r.precision:.1%})"
    )
    _write_table(bins, args.output)
    if args.atoms:
        per_atom = test.atoms_table(positions=False)[["structure", "frame", "atom"]].copy()
        per_atom["dH"] = dh
        per_atom["force_error"] = err
        _write_table(per_atom, args.atoms)
    return 0


def _add_uq(sub) -> None:
    from quests_core.analysis import uncertainty as uq

    p = sub.add_parser(
        "uq",
        help="dH against a training set versus per-atom model error",
        description=_uq.__doc__,
    )
    p.add_argument("test", help="test structures (with per-atom errors or forces)")
    p.add_argument("--reference", help="training structures (or .npz descriptors)")
    p.add_argument("--index", default=":", help="test structures (start:stop:step)")
    p.add_argument("--reference-index", default=":", help="frames of the --reference file")
    p.add_argument("--test-label", help="keep test structures with this label")
    p.add_argument(
        "--reference-label", help="training structures with this label (from TEST if no file)"
    )
    p.add_argument("--error-key", help="per-atom error array (n,) or error vectors (n, 3)")
    p.add_argument("--forces", nargs=2, metavar=("PRED", "REF"), help="two per-atom force arrays")
    p.add_argument("--bins", type=int, default=uq.DEFAULT_BINS, help="dH bins (20)")
    p.add_argument("--window", type=float, default=uq.DEFAULT_WINDOW, help="half-width in bins")
    p.add_argument("--error-threshold", type=float, help="high error above this (default: q90)")
    p.add_argument("-o", "--output", help="binned table (.csv or .parquet)")
    p.add_argument("--atoms", help="per-atom dH and error (.csv or .parquet)")
    _add_descriptor_options(p)
    p.set_defaults(func=_uq)


# ---------------------------------------------------------------------------
# phase entropy
# ---------------------------------------------------------------------------


def _phase_entropy(args: argparse.Namespace) -> int:
    """Information-entropy difference H_B - H_A (k_B/atom) between two sets of structures.

    By default both sets are compared at one bandwidth, the volume rule of the
    mean volume per atom of both pooled (the paper's convention); --bandwidth
    fixes it, --mode each gives each set the bandwidth of its own volume. The
    number is a melting entropy only for the coexisting solid and liquid at
    the melting point; an entropy drop along a trajectory is not one.
    """
    from quests_core.analysis import thermo

    a = _load(args.phase_a, args.index_a)
    b = _load(args.phase_b, args.index_b)
    sa, sb = a.structures, b.structures
    va, vb = args.volume_a, args.volume_b
    if args.bandwidth is None:
        va = thermo.volume_per_atom(sa) if va is None else va
        vb = thermo.volume_per_atom(sb) if vb is None else vb
    res = thermo.phase_entropy_difference(
        _descriptors(sa, args),
        _descriptors(sb, args),
        volume_a=va,
        volume_b=vb,
        h=args.bandwidth,
        mode=args.mode,
        max_envs=args.max_envs,
        seed=args.seed,
        n_threads=args.threads,
    )
    print(
        f"A: {args.phase_a}  V = {res.volume_a:.4g} Å^3/atom  h = {res.h_a:.5f} 1/Å  "
        f"H = {res.entropy_a:.4f} k_B/atom\n"
        f"B: {args.phase_b}  V = {res.volume_b:.4g} Å^3/atom  h = {res.h_b:.5f} 1/Å  "
        f"H = {res.entropy_b:.4f} k_B/atom\n"
        f"H_B - H_A = {res.delta:.4f} k_B/atom ({res.delta_j_per_mol_k:.3f} J/(mol K)), "
        f"{res.n_envs} environments per set, bandwidth mode {res.mode}\n"
        f"{res.describe()}"
    )
    return 0


def _add_phase_entropy(sub) -> None:
    from quests_core.analysis import thermo
    from quests_core.settings import DEFAULTS

    p = sub.add_parser(
        "phase-entropy",
        help="entropy difference between two sets of structures at one bandwidth",
        description=_phase_entropy.__doc__,
    )
    p.add_argument("phase_a", help="structures of set A (e.g. the solid)")
    p.add_argument("phase_b", help="structures of set B (e.g. the liquid)")
    p.add_argument("--index-a", default=":", help="frames of A")
    p.add_argument("--index-b", default=":", help="frames of B")
    p.add_argument("--volume-a", type=float, help="Å^3/atom of A (default: from the cells)")
    p.add_argument("--volume-b", type=float, help="Å^3/atom of B (default: from the cells)")
    p.add_argument(
        "--mode",
        choices=thermo.BANDWIDTH_MODES,
        default=thermo.BANDWIDTH_MODES[0],
        help="pooled: one bandwidth from the mean volume per atom of A and B pooled "
             "(default, the paper's); each: a bandwidth per set from its own volume",
    )
    p.add_argument("--bandwidth", type=float, help="one fixed bandwidth instead of the volume rule")
    p.add_argument("--max-envs", type=int, default=20_000, help="environments per set")
    p.add_argument("--seed", type=int, default=DEFAULTS.seed, help="seed of the subsampling")
    _add_descriptor_options(p, bandwidth=False)
    p.set_defaults(func=_phase_entropy)


def register(subparsers) -> None:
    """Add the analysis subcommands to an argparse ``subparsers`` object."""
    _add_nucleation(subparsers)
    _add_compress(subparsers)
    _add_active_learning(subparsers)
    _add_uq(subparsers)
    _add_phase_entropy(subparsers)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one analysis subcommand (for testing without the full CLI)."""
    parser = argparse.ArgumentParser(prog="quests-dashboard")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except QuestsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
