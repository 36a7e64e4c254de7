"""Information-entropy difference between two given sets of structures (phases).

What it holds
-------------
- :func:`phase_entropy_difference`: H_B - H_A of the environments of two sets
  of structures, in nats per environment, read as k_B per atom, with the
  bandwidths used (:class:`PhaseEntropy`).
- :func:`volume_per_atom`: the atom-weighted mean volume per atom of periodic
  structures.

Conventions (docs/spec.md, "Conventions of the analyses")
---------------------------------------------------------
- The paper compares phases at **one** bandwidth: a fixed h, or the volume
  rule h(V) (SPEC section 2, :func:`quests_core.settings.volume_rule_bandwidth`)
  of "the average of the volumes between the alpha and beta phases": the plain
  mean of the two sets' volumes per atom (each set's own atom-weighted mean,
  :func:`volume_per_atom`), each phase counted once whatever its number of
  frames or atoms. That is the default (``mode="pooled"``); passing one frame
  of the solid instead of ten leaves h where it was (weighting each set by its
  environments moved it from 0.0552 to 0.0502 1/Å on the bundled Cu solid and
  melt). ``mode="each"`` gives each phase the bandwidth of its own volume; it
  changes the difference (1.95 instead of 1.53 k_B/atom for the bundled Cu
  solid and melt), so it is an option only.
- The result is the entropy difference between the two given sets of
  structures at that bandwidth. It is a melting entropy only when A and B are
  the coexisting solid and liquid at the melting point; an entropy drop along
  a trajectory (a quench) is not one.

Invariants
----------
- H is computed on random subsets of equal size of both phases (at most
  ``max_envs``), so the bound H <= log n is the same for both; with equal
  sizes and no more than ``max_envs`` environments nothing is subsampled.
- ``delta == entropy_b - entropy_a``; ``h_a == h_b`` unless ``mode == "each"``.

Memory bounds
-------------
The descriptors of both phases (n x (2k - 1) floats each) plus those of the
kernel sums of :func:`quests_core.entropy` on n <= ``max_envs`` environments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import quests_core as qc
from quests_core.errors import QuestsError
from quests_core.settings import DEFAULTS, volume_rule_bandwidth

#: Gas constant, J/(mol K): one k_B per atom is R per mole of atoms.
GAS_CONSTANT = 8.314462618
#: Bandwidth modes of the volume rule; the first (one bandwidth, the paper's) is the default.
BANDWIDTH_MODES = ("pooled", "each")


@dataclass(frozen=True)
class PhaseEntropy:
    """Entropy difference H_B - H_A in k_B/atom between two sets of structures.

    Attributes
    ----------
    delta : float
        H_B - H_A, k_B per atom.
    entropy_a, entropy_b : float
        H of each set (nats = k_B/atom).
    h_a, h_b : float
        Bandwidths of each set (equal unless ``mode == "each"``).
    volume_a, volume_b : float
        Atomic volumes (Å^3/atom) of each set (NaN where not given).
    n_envs : int
        Environments per set after equal-size subsampling.
    mode : str
        ``"pooled"`` (one h from the mean of the two sets' volumes per atom),
        ``"each"`` (own volume per set) or ``"fixed"`` (one explicit bandwidth).
    volume_pooled : float
        Mean of the two sets' volumes per atom, (volume_a + volume_b) / 2, each
        set counted once (NaN unless pooled).
    """

    delta: float
    entropy_a: float
    entropy_b: float
    h_a: float
    h_b: float
    volume_a: float
    volume_b: float
    n_envs: int
    mode: str
    volume_pooled: float = float("nan")

    @property
    def delta_j_per_mol_k(self) -> float:
        """The difference in J/(mol K) (per mole of atoms)."""
        return self.delta * GAS_CONSTANT

    @property
    def one_bandwidth(self) -> bool:
        """Whether both sets were compared at one bandwidth (the paper's convention)."""
        return self.h_a == self.h_b

    def volume_text(self) -> str:
        """Which volume per atom the bandwidth comes from, in words."""
        if self.mode == "pooled":
            return (f"volume per atom: mean of the two phases' {self.volume_pooled:.4g} "
                    f"(A {self.volume_a:.4g}, B {self.volume_b:.4g} Å^3/atom, each phase "
                    "counted once)")
        if self.mode == "each":
            return (f"volume per atom: each phase its own (A {self.volume_a:.4g}, "
                    f"B {self.volume_b:.4g} Å^3/atom)")
        return "volume per atom: not used (fixed bandwidth)"

    def describe(self) -> str:
        """One line that says what the number is (and is not)."""
        if self.mode == "pooled":
            how = (f"at one bandwidth h = {self.h_a:.5f} 1/Å (volume rule of the mean of "
                   f"the two phases' volumes per atom, {self.volume_pooled:.4g} Å^3/atom)")
        elif self.mode == "fixed":
            how = f"at one fixed bandwidth h = {self.h_a:.5f} 1/Å"
        else:
            how = (f"with a bandwidth per set (h_A = {self.h_a:.5f}, h_B = {self.h_b:.5f} 1/Å): "
                   "not the paper's one-bandwidth comparison")
        return (f"entropy difference between the given sets of structures B and A {how}; "
                "a melting entropy only if A and B are the coexisting solid and liquid at "
                "the melting point (an entropy drop along a trajectory is not one)")


def phase_entropy_difference(
    x_a: np.ndarray,
    x_b: np.ndarray,
    *,
    volume_a: float | None = None,
    volume_b: float | None = None,
    h: float | None = None,
    mode: str = BANDWIDTH_MODES[0],
    max_envs: int | None = 20_000,
    seed: int = DEFAULTS.seed,
    n_threads: int | None = DEFAULTS.threads,
    **kernel_kw,
) -> PhaseEntropy:
    """Entropy difference H_B - H_A in k_B/atom between two sets of structures.

    Parameters
    ----------
    x_a, x_b : (n, d) arrays
        Descriptors of the environments (one per atom) of each set.
    volume_a, volume_b : float
        Atom-weighted mean volume per atom of each set in Å^3/atom (needed
        unless ``h`` is given; :func:`volume_per_atom`).
    h : float, optional
        One fixed bandwidth for both sets; overrides the volume rule.
    mode : {"pooled", "each"}
        ``"pooled"`` (default, the paper's): one bandwidth, the volume rule of
        the mean of the two sets' volumes per atom, (volume_a + volume_b) / 2,
        each set counted once whatever its number of environments (the
        paper's "average of the volumes between the alpha and beta phases"),
        through :func:`quests_core.settings.volume_rule_bandwidth` with equal
        weights. ``"each"``: the volume rule per set with its own volume (two
        bandwidths).
    max_envs : int or None
        Subsample both sets to min(n_a, n_b, max_envs) environments.
    seed : int
        Seed of the subsampling.
    n_threads, **kernel_kw
        Keywords of both entropy calls (``precision``, ``backend``).

    Returns
    -------
    PhaseEntropy
        Its :meth:`PhaseEntropy.describe` says what the number is.
    """
    a = np.asarray(x_a)
    b = np.asarray(x_b)
    for name, arr in (("phase A", a), ("phase B", b)):
        if arr.ndim != 2 or len(arr) < 2:
            raise QuestsError(f"{name} needs at least 2 environments, got shape {arr.shape}")
    if a.shape[1] != b.shape[1]:
        raise QuestsError(
            f"descriptor dimension differs: phase A {a.shape[1]} vs phase B {b.shape[1]} "
            "(k or species differ)"
        )
    pooled_v = float("nan")
    if h is not None:
        if not h > 0:
            raise QuestsError(f"bandwidth must be positive, got {h}")
        h_a = h_b = float(h)
        va = float("nan") if volume_a is None else float(volume_a)
        vb = float("nan") if volume_b is None else float(volume_b)
        used_mode = "fixed"
    else:
        if mode not in BANDWIDTH_MODES:
            raise QuestsError(f"unknown bandwidth mode {mode!r}; use one of {BANDWIDTH_MODES}")
        if volume_a is None or volume_b is None:
            raise QuestsError("atomic volumes of both phases are needed for the volume rule")
        va, vb = float(volume_a), float(volume_b)
        if not (np.isfinite(va) and np.isfinite(vb) and va > 0 and vb > 0):
            raise QuestsError(f"atomic volumes must be positive, got {va} and {vb}")
        if mode == "each":
            h_a, h_b = float(qc.bandwidth_from_volume(va)), float(qc.bandwidth_from_volume(vb))
        else:
            # each phase once: the plain mean of the two volumes per atom, not weighted
            # by the environments of each set (one frame of A instead of ten gives the
            # same bandwidth)
            h_a = h_b = volume_rule_bandwidth([va, vb], [1, 1])
            pooled_v = (va + vb) / 2.0
        used_mode = mode
    n = min(len(a), len(b))
    if max_envs is not None:
        if max_envs < 2:
            raise QuestsError(f"max_envs must be at least 2, got {max_envs}")
        n = min(n, int(max_envs))
    rng = np.random.default_rng(seed)
    if len(a) > n:
        a = a[np.sort(rng.choice(len(a), n, replace=False))]
    if len(b) > n:
        b = b[np.sort(rng.choice(len(b), n, replace=False))]
    h_entropy_a = float(qc.entropy(a, h_a, n_threads=n_threads, **kernel_kw))
    h_entropy_b = float(qc.entropy(b, h_b, n_threads=n_threads, **kernel_kw))
    return PhaseEntropy(
        delta=h_entropy_b - h_entropy_a,
        entropy_a=h_entropy_a,
        entropy_b=h_entropy_b,
        h_a=h_a,
        h_b=h_b,
        volume_a=va,
        volume_b=vb,
        n_envs=int(n),
        mode=used_mode,
        volume_pooled=float(pooled_v),
    )


def volume_per_atom(structures) -> float:
    """Atom-weighted mean volume per atom (Å^3/atom) of periodic structures.

    The total volume over the total number of atoms: the mean of the frames'
    volumes per atom weighted by their atoms, as in the volume rule
    (:func:`quests_core.settings.volume_rule_bandwidth`).
    """
    if len(structures) == 0:
        raise QuestsError("no structures (empty selection)")
    volume, atoms_total = 0.0, 0
    for i, atoms in enumerate(structures):
        if not all(atoms.pbc) or atoms.cell.rank < 3:
            raise QuestsError("atomic volume needs a fully periodic cell", index=i)
        volume += float(atoms.get_volume())
        atoms_total += len(atoms)
    return volume / atoms_total
