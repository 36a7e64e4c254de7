"""Entropy difference between two phases from the information entropy.

The information entropy H of a phase's environments, in nats per environment,
reads as an entropy in k_B per atom. For thermodynamic comparisons the kernel
bandwidth follows the atomic volume (SPEC section 2):

    h(V) = 0.0897141 exp(-0.5 (V / 10.896)^2) + 0.0119417

H is computed through dH, H = log n + mean_i dH(X_i | X), on random subsets
of equal size of both phases (so the log n bound is the same for both).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import quests_core as qc
from quests_core.errors import QuestsError

#: Gas constant, J/(mol K): one k_B per atom is R per mole of atoms.
GAS_CONSTANT = 8.314462618
BANDWIDTH_MODES = ("each", "common")


@dataclass(frozen=True)
class PhaseEntropy:
    """Entropy difference S_B - S_A in k_B/atom and the bandwidths used.

    Attributes
    ----------
    delta : float
        H_B - H_A, k_B per atom.
    entropy_a, entropy_b : float
        H of each phase (nats = k_B/atom).
    h_a, h_b : float
        Bandwidths of each phase (equal unless ``mode == "each"``).
    volume_a, volume_b : float
        Atomic volumes (Å^3/atom) the bandwidths came from (NaN if h was given).
    n_envs : int
        Environments per phase after equal-size subsampling.
    mode : str
        ``"each"`` (own volume per phase), ``"common"`` (mean volume) or
        ``"fixed"`` (explicit bandwidth).
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

    @property
    def delta_j_per_mol_k(self) -> float:
        """The difference in J/(mol K) (per mole of atoms)."""
        return self.delta * GAS_CONSTANT


def phase_entropy_difference(
    x_a: np.ndarray,
    x_b: np.ndarray,
    *,
    volume_a: float | None = None,
    volume_b: float | None = None,
    h: float | None = None,
    mode: str = "each",
    max_envs: int | None = 20_000,
    seed: int = 0,
    n_threads: int | None = None,
) -> PhaseEntropy:
    """Entropy difference between phase B and phase A in k_B/atom.

    Parameters
    ----------
    x_a, x_b : (n, d) arrays
        Descriptors of the environments of each phase.
    volume_a, volume_b : float
        Atomic volume of each phase in Å^3/atom (needed unless ``h`` is given).
    h : float, optional
        A fixed bandwidth for both phases; overrides the volume rule.
    mode : {"each", "common"}
        Volume rule per phase with its own volume, or one bandwidth from the
        mean of both volumes.
    max_envs : int or None
        Subsample both phases to min(n_a, n_b, max_envs) environments.
    seed : int
        Seed of the subsampling.
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
            h_a = h_b = float(qc.bandwidth_from_volume(0.5 * (va + vb)))
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
    h_entropy_a = float(qc.entropy(a, h_a, n_threads=n_threads))
    h_entropy_b = float(qc.entropy(b, h_b, n_threads=n_threads))
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
    )


def volume_per_atom(structures) -> float:
    """Mean atomic volume (Å^3/atom) of periodic structures."""
    if len(structures) == 0:
        raise QuestsError("no structures (empty selection)")
    vols = []
    for i, atoms in enumerate(structures):
        if not all(atoms.pbc) or atoms.cell.rank < 3:
            raise QuestsError("atomic volume needs a fully periodic cell", index=i)
        vols.append(atoms.get_volume() / len(atoms))
    return float(np.mean(vols))
