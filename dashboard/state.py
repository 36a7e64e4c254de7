"""Per-session state of the dashboard (Param classes) and the result containers.

Every browser session builds its own :class:`AppState`; nothing here is
shared between sessions. Views read from and write to the state, never to
each other, so they can be unit-tested with a state filled by hand.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import param

from quests_core.analysis.clusters import CLUSTER_METHODS  # the core's: connected first
from quests_core.analysis.cnt import FIT_WEIGHTS
from quests_core.settings import DEFAULTS, DOMAINS, LAMMPS_TIMESTEP_FS, PRECISIONS, Settings

from .paths import MAX_UPLOAD_MB, is_lammps_file, is_md_trajectory

#: Roles a loaded file can play.
ROLES: tuple[str, ...] = ("reference", "test", "trajectory", "solid reference")
#: Ways to choose the kernel bandwidth (as the Data view names them) -> the
#: ``bandwidth_rule`` of :class:`quests_core.settings.Settings`.
BANDWIDTH_RULES: dict[str, str] = {"fixed": "fixed", "volume rule": "volume"}
#: Ways to choose the kernel bandwidth, as the Data view names them.
BANDWIDTH_MODES: tuple[str, ...] = tuple(BANDWIDTH_RULES)

log = logging.getLogger("dashboard")


@dataclass
class FileSpec:
    """One file chosen in the Data view.

    The dashboard's entry of a file: how to read it (``path``, ``index``,
    ``type_map`` as the user typed it, ``timestep_fs``) plus what only the
    dashboard needs (``name``, ``role``, ``label``). :meth:`core_spec` gives
    the engine's :class:`quests_core.dataset.FileSpec` of the same frames.

    Attributes
    ----------
    path : str
        Real path on the server (inside the data directory or the session's
        upload folder).
    name : str
        Display name (relative path or upload name); unique within a session.
    role : str
        One of :data:`ROLES`.
    label : str
        Label given to every structure of the file ("" keeps the labels the
        file itself carries).
    index : str
        Frame selection, ``"start:stop:step"``.
    type_map : str
        LAMMPS type -> element for LAMMPS dumps and data files whose atoms
        carry only numeric types, as :func:`quests_core.io.parse_type_map`
        reads it: ``"1:O,2:H"``, ``"1=O 2=H"`` or ``"O H"`` (elements in type
        order); ``""`` lets ASE read type 1 as H, 2 as He, ... (with a warning).
    timestep_fs : float
        Length of one MD step in fs for files that record the step number
        (LAMMPS dumps): the ``time`` column is ``timestep * timestep_fs / 1000``
        ps. Files that carry a time of their own keep it.
    topology : str
        The topology file naming the atoms of an MD trajectory (XTC, TRR, DCD,
        Amber NetCDF; docs/formats.md), a real path on the server; ``""`` uses
        the file with the trajectory's name next to it. Ignored for the
        formats read through ASE.
    topology_format : str
        MDAnalysis's name of the topology's format when its ending does not say it
        (``"TOP"`` for an Amber ``.top``); typed as ``posfor.top as TOP`` in the files
        table's topology column.
    """

    path: str
    name: str
    role: str = "test"
    label: str = ""
    index: str = ":"
    type_map: str = ""
    timestep_fs: float = LAMMPS_TIMESTEP_FS
    topology: str = ""
    topology_format: str = ""

    def core_spec(self):
        """The engine's :class:`quests_core.dataset.FileSpec` of these frames (the type
        map parsed, the topology given or None)."""
        from quests_core.dataset import FileSpec as CoreFileSpec
        from quests_core.io import parse_type_map

        type_map = parse_type_map(self.type_map or None) or {}
        return CoreFileSpec(path=self.path, index=self.index or ":",
                            type_map=tuple(sorted(type_map.items())),
                            topology=self.topology or None,
                            topology_format=(self.topology_format or None) if self.topology
                            else None)

    def same_input(self, other: FileSpec) -> bool:
        """Whether ``other`` reads the same frames of the same file in the same role."""
        keys = ("path", "role", "label", "index", "type_map", "timestep_fs", "topology",
                "topology_format")
        return all(getattr(self, k) == getattr(other, k) for k in keys)


def unique_display_name(name: str, taken: set[str] | list[str]) -> str:
    """``name``, or ``name #2``, ``name #3``, ... : the first not in ``taken``."""
    taken = set(taken)
    if name not in taken:
        return name
    n = 2
    while f"{name} #{n}" in taken:
        n += 1
    return f"{name} #{n}"


@dataclass
class LearningResult:
    """Learning curve H(N) of one dataset and its asymptote fit (entropies in nats)."""

    name: str
    sizes: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    log_n: np.ndarray
    n_total: int
    asymptote: float = float("nan")
    gap: np.ndarray = field(default_factory=lambda: np.zeros(0))
    fit_error: str = ""

    @property
    def final_gap(self) -> float:
        """Information gap at the largest N (nats); NaN without a fit."""
        return float(self.gap[-1]) if len(self.gap) else float("nan")


@dataclass
class OverlapResult:
    """overlap(row | column) over groups (files or labels).

    ``matrix[i, j]`` is the fraction of environments of group ``names[i]``
    with dH(. | group ``names[j]``) <= 0 at that column's bandwidth
    ``bandwidths[names[j]]`` (one h for all, or each group's volume rule);
    ``delta[(i, j)]`` holds those dH values (nats) for the histograms.
    """

    grouping: str
    names: list[str]
    matrix: np.ndarray
    delta: dict[tuple[int, int], np.ndarray]
    sizes: dict[str, int]
    bandwidths: dict[str, float] = field(default_factory=dict)

    def long_table(self) -> pd.DataFrame:
        """One row per (row, column) pair: ``row, column, overlap``."""
        n = len(self.names)
        rows = [(self.names[i], self.names[j], float(self.matrix[i, j])) for i in range(n)
                for j in range(n)]
        return pd.DataFrame(rows, columns=["row", "column", "overlap"])


@dataclass
class NucleationResult:
    """Solid-like clusters of one trajectory against a solid reference, with classical
    nucleation theory (CNT) the paper's way (docs/spec.md, "Conventions of the analyses").

    ``band_min``/``band_max`` hold, per frame, the one critical-size band computed at
    ``t_pooled``, the mean temperature of the pooled pre-nucleation frames
    ``pre_frames`` (``inf`` on frames at or above the melting point or without a
    temperature; ``nan`` everywhere without CNT constants). ``sizes``/``counts`` are
    the cluster-size distribution of those frames, ``fit`` its CNT fit at
    ``t_pooled`` with the ``weights`` of :data:`quests_core.analysis.cnt.FIT_WEIGHTS`
    (default unweighted, the paper's) and its clusters sized with ``fit_v_atom``
    Å^3/atom (``None``: the constants' fit volume, ``"V_atom fit (Å^3)"``, for Cu the
    paper's 11.78, while the band uses ``"V_atom (Å^3)"``, 12.893). ``constants``
    holds the material constants used (``None`` when none could be chosen; ``note``
    then says why in one line).
    """

    source: str
    structure: np.ndarray
    time: np.ndarray
    largest: np.ndarray
    n_solid: np.ndarray
    temperature: np.ndarray
    band_min: np.ndarray
    band_max: np.ndarray
    sizes: np.ndarray
    counts: np.ndarray
    n_frames: int
    fit: dict[str, float] | None = None
    fit_curve: tuple[np.ndarray, np.ndarray] | None = None
    fit_error: str = ""
    pre_frames: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    t_pooled: float = float("nan")
    #: The file's own 0-based frame numbers of the analysed frames (empty: 0..n-1).
    frame: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    critical_band: tuple[float, float] = (float("nan"), float("nan"))
    constants: dict[str, Any] | None = None
    weights: str = FIT_WEIGHTS[0]
    note: str = ""
    fit_v_atom: float | None = None

    def fit_volume(self) -> float:
        """Volume per atom (Å^3/atom) that sizes the clusters of the CNT fit: the chosen
        one, else the constants' fit volume, else their band volume (NaN without constants)."""
        if self.fit_v_atom is not None:
            return float(self.fit_v_atom)
        if self.constants is None:
            return float("nan")
        return float(self.constants.get("V_atom fit (Å^3)", self.constants["V_atom (Å^3)"]))

    def file_frames(self) -> np.ndarray:
        """The file's own 0-based frame numbers of the analysed frames."""
        if len(self.frame) == len(self.largest):
            return np.asarray(self.frame, dtype=np.int64)
        return np.arange(len(self.largest), dtype=np.int64)

    def timeline(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "structure": self.structure,
                "frame": self.file_frames(),
                "time": self.time,
                "largest_cluster": self.largest,
                "n_solid": self.n_solid,
                "temperature": self.temperature,
                "critical_min": self.band_min,
                "critical_max": self.band_max,
            }
        )

    def distribution(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "size": self.sizes,
                "count": self.counts,
                "per_frame": self.counts / max(self.n_frames, 1),
            }
        )


@dataclass
class Results:
    """Everything one computation produced for one session.

    Attributes
    ----------
    frames : DataFrame
        Per-frame table (docs/architecture.md columns, ``source`` is the
        display name) plus ``role``, ``H``, ``mean_dH``, ``frac_novel`` and,
        with a solid reference, ``largest_cluster``.
    atoms : DataFrame
        Per-atom table (compact dtypes): ``structure, frame, time, label, atom,
        species, x, y, z, source, role, dH`` and any per-atom arrays.
    nucleations : dict
        Solid-like clusters and CNT of every trajectory against the solid reference
        (:class:`NucleationResult` by file name, in the order of the files).
    species, precision
        The multicomponent species (None: one block) and the precision of the sums.
    """

    frames: pd.DataFrame
    atoms: pd.DataFrame
    h: float
    k: int
    cutoff: float
    reference: str
    files: list[FileSpec]
    learning: dict[str, LearningResult] = field(default_factory=dict)
    overlap: dict[str, OverlapResult] = field(default_factory=dict)
    nucleations: dict[str, NucleationResult] = field(default_factory=dict)
    nucleation_note: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    species: tuple[str, ...] | None = None
    precision: str = "float64"

    def settings_text(self) -> str:
        """The descriptor and kernel settings of these results in one line."""
        text = f"k = {self.k}, cutoff = {self.cutoff:g} Å, h = {self.h:.4g} 1/Å"
        if self.species:
            text += f", species {','.join(self.species)} (multicomponent)"
        return text + f", {self.precision}"

    @property
    def n_atoms(self) -> int:
        return len(self.atoms)

    @property
    def nucleation(self) -> NucleationResult | None:
        """The nucleation result of the first trajectory (None without one); every
        trajectory's is in :attr:`nucleations`, by file."""
        return next(iter(self.nucleations.values()), None)

    @nucleation.setter
    def nucleation(self, result: NucleationResult | None) -> None:
        """Replace the result of ``result.source`` (None: forget every result)."""
        if result is None:
            self.nucleations = {}
        else:
            self.nucleations = {**self.nucleations, result.source: result}

    def frame_name(self, structure: int) -> str:
        """A structure as the user knows it: ``file frame N`` (the file's own 0-based
        frame number); ``structure N`` when it is not in the results."""
        row = self.frames.loc[self.frames["structure"] == structure]
        if row.empty:
            return f"structure {structure}"
        return f"{row['source'].iat[0]} frame {int(row['frame'].iat[0])}"

    def frame_atoms(self, structure: int) -> pd.DataFrame:
        """Rows of the per-atom table of one structure."""
        row = self.frames.loc[self.frames["structure"] == structure]
        if row.empty:
            return self.atoms.iloc[0:0]
        start = int(row["atom_offset"].iat[0])
        return self.atoms.iloc[start : start + int(row["n_atoms"].iat[0])]

    def summary(self) -> pd.DataFrame:
        """One row per file: role, frames, atoms, mean H, mean dH, fraction novel."""
        f = self.frames
        grouped = f.groupby("source", sort=False)
        out = pd.DataFrame(
            {
                "role": grouped["role"].first(),
                "frames": grouped.size(),
                "atoms": grouped["n_atoms"].sum(),
                "mean H (nats)": grouped["H"].mean(),
            }
        )
        atoms = self.atoms
        by = atoms.groupby("source", sort=False, observed=True)["dH"]
        out["mean dH (nats)"] = by.mean()
        out["fraction dH > 0"] = by.apply(lambda s: float((s > 0).mean()))
        return out.reset_index().rename(columns={"source": "file"})


def _check_spec(spec: FileSpec) -> None:
    """Refuse an unknown role, a malformed frame selection or type map, a bad time step."""
    from quests_core.errors import QuestsError
    from quests_core.io import parse_index, parse_type_map

    if spec.role not in ROLES:
        raise QuestsError(f"{spec.name}: unknown role {spec.role!r}; use one of "
                          f"{', '.join(ROLES)}")
    try:
        parse_index(spec.index)
        parse_type_map(spec.type_map or None)
    except QuestsError as exc:
        raise QuestsError(f"{spec.name}: {exc}") from None
    if not np.isfinite(spec.timestep_fs) or spec.timestep_fs <= 0:
        raise QuestsError(f"{spec.name}: the time step must be a positive number of fs, "
                          f"got {spec.timestep_fs!r}")


@dataclass(frozen=True)
class DashboardOptions:
    """The dashboard's own options, beyond the descriptor and kernel settings.

    Frozen and picklable: sent to the worker process with a job.

    Attributes
    ----------
    learning_max_n : int
        Largest subset size N of the learning curves (environments).
    learning_repeats : int
        Repeats per learning-curve size.
    overlap_max_n : int
        Environments sampled per group for the overlap matrix.
    cluster_method : str
        Solid-like cluster definition of the nucleation analysis
        (:data:`CLUSTER_METHODS`).
    exact_entropy : bool
        Exact per-frame H whatever the frame size.
    lammps_timestep_fs : float
        Length of one MD step of the LAMMPS dumps (fs).
    cnt_t_melt, cnt_latent_heat, cnt_gamma_min, cnt_gamma_max, cnt_v_atom : float or None
        CNT material constants of the nucleation analysis (K, kJ/mol, J/m^2,
        J/m^2, Å^3/atom); ``None`` takes the paper's value, which exists for a
        Cu trajectory only (:func:`quests_core.analysis.cnt.cnt_constants`).
    """

    learning_max_n: int = 2000
    learning_repeats: int = 3
    overlap_max_n: int = 2000
    cluster_method: str = CLUSTER_METHODS[0]
    exact_entropy: bool = False
    lammps_timestep_fs: float = LAMMPS_TIMESTEP_FS
    cnt_t_melt: float | None = None
    cnt_latent_heat: float | None = None
    cnt_gamma_min: float | None = None
    cnt_gamma_max: float | None = None
    cnt_v_atom: float | None = None

    def cnt_kwargs(self) -> dict[str, Any]:
        """The given CNT constants as keywords of
        :func:`quests_core.analysis.cnt.cnt_constants` (the missing ones left out)."""
        out: dict[str, Any] = {}
        if self.cnt_t_melt is not None:
            out["t_melt"] = self.cnt_t_melt
        if self.cnt_latent_heat is not None:
            out["latent_heat"] = self.cnt_latent_heat
        if self.cnt_v_atom is not None:
            out["v_atom"] = self.cnt_v_atom
        gamma = (self.cnt_gamma_min, self.cnt_gamma_max)
        if all(g is not None for g in gamma):
            out["gamma_range"] = gamma
        return out

    def __post_init__(self) -> None:
        from quests_core.errors import QuestsError

        if self.cluster_method not in CLUSTER_METHODS:
            raise QuestsError(f"cluster_method must be one of {', '.join(CLUSTER_METHODS)}, "
                              f"got {self.cluster_method!r}")
        for name in ("learning_max_n", "learning_repeats", "overlap_max_n"):
            if int(getattr(self, name)) < 1:
                raise QuestsError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if (self.cnt_gamma_min is None) != (self.cnt_gamma_max is None):
            raise QuestsError("give both ends of the interfacial energy range (J/m^2), "
                              "or neither")


#: The defaults of the dashboard's own options.
OPTIONS = DashboardOptions()


@dataclass(frozen=True)
class RunSettings:
    """Everything a computation of the dashboard is run with: frozen, picklable.

    ``core`` holds the descriptor and kernel settings (k, cutoff, bandwidth and
    its rule, seed, ...), ``options`` the dashboard's own (learning curves,
    overlap sampling, clusters, exact H, LAMMPS time step).
    """

    core: Settings = DEFAULTS
    options: DashboardOptions = OPTIONS

    def replace(self, **changes: Any) -> RunSettings:
        """A copy with ``changes`` applied, each to ``core`` or ``options`` by its name."""
        core_names = {f.name for f in dataclasses.fields(Settings)}
        option_names = {f.name for f in dataclasses.fields(DashboardOptions)}
        unknown = set(changes) - core_names - option_names
        if unknown:
            from quests_core.errors import QuestsError

            raise QuestsError(f"unknown settings {', '.join(sorted(unknown))}")
        core = {k: v for k, v in changes.items() if k in core_names}
        options = {k: v for k, v in changes.items() if k in option_names}
        return RunSettings(
            core=self.core.replace(**core) if core else self.core,
            options=dataclasses.replace(self.options, **options) if options else self.options,
        )


def _rule_mode(rule: str) -> str:
    """The Data view's name of a bandwidth rule of :class:`Settings`."""
    return next(mode for mode, r in BANDWIDTH_RULES.items() if r == rule)


class ComputeSettings(param.Parameterized):
    """Descriptor and entropy settings chosen in the Data view.

    Defaults come from :data:`quests_core.settings.DEFAULTS` and :data:`OPTIONS`;
    :meth:`frozen` gives the :class:`RunSettings` a job runs with.
    """

    # bounds: the engine's (refused beyond); soft bounds: the range offered first
    k = param.Integer(default=DEFAULTS.k, bounds=DOMAINS["k"].bounds,
                      softbounds=DOMAINS["k"].typical, doc="Neighbours per environment.")
    cutoff = param.Number(default=DEFAULTS.cutoff, bounds=DOMAINS["cutoff"].bounds,
                          softbounds=DOMAINS["cutoff"].typical, doc="Cutoff radius (Å).")
    bandwidth_mode = param.Selector(
        default=_rule_mode(DEFAULTS.bandwidth_rule), objects=list(BANDWIDTH_MODES),
        doc="Fixed bandwidth, or h from the reference's volume per atom (SPEC section 2).",
    )
    bandwidth = param.Number(default=DEFAULTS.bandwidth, bounds=DOMAINS["bandwidth"].bounds,
                             softbounds=DOMAINS["bandwidth"].typical,
                             doc="Kernel bandwidth h (1/Å).")
    species = param.String(
        default="", label="Species (multicomponent)",
        doc="Element symbols for a multicomponent descriptor, e.g. 'O,H' (the CLI's "
            "--species): one block of k neighbours per element. Empty: one block over all "
            "neighbours whatever their element.")
    precision = param.Selector(
        default=DEFAULTS.precision, objects=list(PRECISIONS),
        doc="Floating point of the kernel sums (the CLI's --precision): float32 is about "
            "twice as fast; dH agrees to ~1e-5 nats. Applies to Compute and Uncertainty "
            "(Compression and Active learning sum in float64).")
    learning_max_n = param.Integer(
        default=OPTIONS.learning_max_n, bounds=(10, 200_000),
        doc="Largest subset size N of the learning curves (environments).",
    )
    learning_repeats = param.Integer(default=OPTIONS.learning_repeats, bounds=(1, 20),
                                     doc="Repeats per learning-curve size.")
    overlap_max_n = param.Integer(
        default=OPTIONS.overlap_max_n, bounds=(10, 200_000),
        doc="Environments sampled per group for the overlap matrix.",
    )
    cluster_method = param.Selector(
        default=OPTIONS.cluster_method, objects=list(CLUSTER_METHODS),
        doc="Solid-like cluster definition (nucleation).",
    )
    seed = param.Integer(default=DEFAULTS.seed, bounds=(0, None),
                         doc="Random seed for subsampling.")
    exact_entropy = param.Boolean(
        default=OPTIONS.exact_entropy, label="Exact H of large frames",
        doc="Exact per-frame H whatever the frame size (n^2 kernel pairs: minutes for "
            "100,000s of atoms). Off: frames above 40,000 atoms get H from a random sample "
            "of atoms, with its standard error (H_stderr, the band in Trajectory).",
    )
    lammps_timestep_fs = param.Number(
        default=OPTIONS.lammps_timestep_fs, bounds=(1e-6, None),
        inclusive_bounds=(True, True), label="LAMMPS time step (fs)",
        doc="Length of one MD step of the LAMMPS dumps (fs): time = timestep x this / 1000 ps.",
    )
    cnt_t_melt = param.Number(default=OPTIONS.cnt_t_melt, allow_None=True, bounds=(0, None),
                              label="CNT melting temperature (K)",
                              doc="Empty: the paper's Cu value (Cu trajectories only).")
    cnt_latent_heat = param.Number(default=OPTIONS.cnt_latent_heat, allow_None=True,
                                   bounds=(0, None), label="CNT latent heat (kJ/mol)",
                                   doc="Empty: the paper's Cu value (Cu trajectories only).")
    cnt_gamma_min = param.Number(default=OPTIONS.cnt_gamma_min, allow_None=True,
                                 bounds=(0, None), label="CNT gamma_SL low (J/m^2)",
                                 doc="Low end of the interfacial energy range; empty: Cu's.")
    cnt_gamma_max = param.Number(default=OPTIONS.cnt_gamma_max, allow_None=True,
                                 bounds=(0, None), label="CNT gamma_SL high (J/m^2)",
                                 doc="High end of the interfacial energy range; empty: Cu's.")
    cnt_v_atom = param.Number(default=OPTIONS.cnt_v_atom, allow_None=True, bounds=(0, None),
                              label="CNT volume per atom (Å^3)",
                              doc="Volume per atom of the solid; empty: Cu's.")

    def frozen(self) -> RunSettings:
        """The settings as a frozen, picklable :class:`RunSettings` (sent to the worker)."""
        core = DEFAULTS.replace(k=self.k, cutoff=self.cutoff, bandwidth=self.bandwidth,
                                bandwidth_rule=BANDWIDTH_RULES[self.bandwidth_mode],
                                seed=self.seed, species=self.species.strip() or None,
                                precision=self.precision)
        options = DashboardOptions(
            learning_max_n=self.learning_max_n, learning_repeats=self.learning_repeats,
            overlap_max_n=self.overlap_max_n, cluster_method=self.cluster_method,
            exact_entropy=self.exact_entropy, lammps_timestep_fs=self.lammps_timestep_fs,
            cnt_t_melt=self.cnt_t_melt, cnt_latent_heat=self.cnt_latent_heat,
            cnt_gamma_min=self.cnt_gamma_min, cnt_gamma_max=self.cnt_gamma_max,
            cnt_v_atom=self.cnt_v_atom,
        )
        return RunSettings(core=core, options=options)


#: How long an error's pop-up stays (ms): long enough to read a file name and a reason.
ERROR_MS = 20_000


class AppState(param.Parameterized):
    """State of one browser session."""

    data_dir = param.String(default="", doc="Directory the file picker lists.")
    upload_dir = param.String(default="", doc="Private folder of this session's uploads.")
    max_upload_mb = param.Number(default=MAX_UPLOAD_MB, bounds=(0.001, None),
                                 doc="Upload size cap (MB).")
    files = param.List(default=[], item_type=FileSpec, doc="Files chosen for computation.")
    settings = param.ClassSelector(class_=ComputeSettings, doc="Compute settings.")
    results = param.ClassSelector(class_=Results, allow_None=True, doc="Last computation.")
    results_note = param.String(
        default="", doc="Why the results shown are not those of the last Compute (it failed "
                        "or was cancelled); empty when they are.")
    selected_structure = param.Integer(default=None, allow_None=True,
                                       doc="Structure opened in Atoms and Structure.")
    selected_atoms = param.Array(default=None, allow_None=True,
                                 doc="Rows of the per-atom table picked in the Atoms view.")
    frame_focus = param.Boolean(default=False,
                                doc="The Atoms view shows only the selected structure.")
    active_tab = param.Integer(default=0, doc="Index of the view shown.")
    dh_scale = param.Selector(default="asinh", objects=["asinh", "linear"],
                              doc="How every dH axis and colour bar is drawn "
                                  "(dashboard.dhscale): asinh (default) or linear.")
    messages = param.List(default=[], doc="Notifications shown in this session, (level, text).")

    def __init__(self, **params):
        if "settings" not in params:
            params["settings"] = ComputeSettings()
        super().__init__(**params)

    # ------------------------------------------------------------ files

    def add_file(self, path: str, name: str, role: str = "test", label: str = "",
                 index: str = ":", type_map: str = "", timestep_fs: float = LAMMPS_TIMESTEP_FS,
                 topology: str = "", topology_format: str = "") -> FileSpec:
        """Add a file and return its entry.

        The same file may be added several times (other roles, other frames):
        each entry gets its own display name, ``name``, then ``name #2``, ...
        Adding an entry identical to one already chosen (same file, role,
        label, frames, type map, time step and topology) adds nothing and returns
        that entry.
        """
        spec = FileSpec(path=str(path), name=name, role=role, label=label, index=index or ":",
                        type_map=type_map.strip(), timestep_fs=float(timestep_fs),
                        topology=str(topology or ""),
                        topology_format=str(topology_format or "").strip().upper())
        _check_spec(spec)
        for f in self.files:
            if f.same_input(spec):
                return f
        spec.name = unique_display_name(name, [f.name for f in self.files])
        self.files = self.files + [spec]
        return spec

    def remove_file(self, name: str) -> None:
        """Remove the entry called ``name`` (only that one)."""
        self.files = [f for f in self.files if f.name != name]

    def update_file(self, name: str, **changes: Any) -> None:
        """Change role/label/index/type_map/timestep_fs/topology of the entry called
        ``name``."""
        new = []
        for f in self.files:
            if f.name == name:
                f = FileSpec(**{**f.__dict__, **changes})
                _check_spec(f)
            new.append(f)
        self.files = new

    def files_table(self) -> pd.DataFrame:
        """The chosen files: ``file, role, label, frames``, ``types`` (the LAMMPS type
        map) when a LAMMPS file is among them, and ``topology`` (the topology file as the
        user named it, "" = the one next to the trajectory) when an MD trajectory
        (XTC, TRR, DCD, NetCDF) is among them."""
        table = pd.DataFrame(
            [(f.name, f.role, f.label, f.index) for f in self.files],
            columns=["file", "role", "label", "frames"],
        )
        if any(is_lammps_file(f.path) for f in self.files):
            table["types"] = [f.type_map for f in self.files]
        if any(is_md_trajectory(f.path) for f in self.files):
            table["topology"] = [
                self.topology_name(f.topology)
                + (f" as {f.topology_format}" if f.topology and f.topology_format else "")
                for f in self.files]
        return table

    def topology_name(self, path: str) -> str:
        """A topology's server path as the user names it: relative to the data directory,
        ``upload/<name>`` in the session's upload folder, else its file name."""
        if not path:
            return ""
        from pathlib import Path

        for root, prefix in ((self.upload_dir, "upload/"), (self.data_dir, "")):
            if not root:
                continue
            for base in (Path(root).resolve(), Path(root)):
                try:
                    return prefix + Path(path).relative_to(base).as_posix()
                except ValueError:
                    pass
        return Path(path).name

    # ------------------------------------------------------ notifications

    def notify(self, level: str, text: str, duration: int = 6000) -> None:
        """Show a notification in the page (and keep it in :attr:`messages`).

        One pop-up at a time: a new one replaces the one still shown, and each closes
        after ``duration`` ms (errors are given :data:`ERROR_MS`), so none piles up over
        the plots; every message stays in :attr:`messages` and the latest in the status.
        """
        import panel as pn

        self.messages = self.messages + [(level, text)]
        log.log(logging.ERROR if level == "error" else logging.INFO, text)
        notifications = getattr(pn.state, "notifications", None)
        if notifications is None:
            return
        show = getattr(notifications, level, notifications.info)
        try:
            shown = getattr(self, "_notification", None)
            if shown is not None and not getattr(shown, "_destroyed", False):
                shown.destroy()
            self._notification = show(text, duration=int(duration) if duration > 0 else ERROR_MS)
        except Exception:  # pragma: no cover - a notification must never break a session
            log.exception("could not show notification")
