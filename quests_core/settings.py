"""One frozen settings object for every front end: defaults, validation, volume rule.

The CLI (every subcommand), the dashboard's state, :mod:`quests_core.chunked`
and :mod:`quests_core.distributed` take their defaults from :data:`DEFAULTS`;
no other module writes a default for these quantities.  A :class:`Settings`
is validated when it is made, so a value that reaches the engine through it
is already in the engine's bounds (:mod:`quests_core._validate`).

Invariants
----------
- ``Settings`` is immutable and hashable; ``replace`` returns a validated copy.
- ``species`` is ``None`` (single-component descriptor) or a sorted tuple of
  distinct element symbols: :func:`normalize_species` is the only place that
  turns user text or lists into that form.
- ``bandwidth_rule == "volume"`` means h comes from :func:`volume_rule_bandwidth`
  of the reference data; ``bandwidth`` is then unused.

The volume rule
---------------
``h(V)`` of SPEC section 2 is defined for "the atomic volume V (Å^3/atom)" of
a system, a thermodynamic quantity: the volume of the system divided by its
number of atoms.  For a set of frames that is the total volume over the total
number of atoms, i.e. the atom-weighted mean of the frames' volumes per atom.
A median of the frames' values is not a volume per atom of anything and
ignores frame sizes, so it is not used (see ``docs/spec.md``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validate import (
    MAX_BANDWIDTH,
    MAX_CUTOFF,
    MAX_K,
    MIN_BANDWIDTH,
    MIN_CUTOFF,
    check_bandwidth,
    check_int,
    check_k_cutoff,
)
from .backend import BACKENDS as _ENGINE_BACKENDS
from .errors import QuestsError

PRECISIONS = ("float64", "float32")
BACKENDS = ("auto", *_ENGINE_BACKENDS)
BANDWIDTH_RULES = ("fixed", "volume")


@dataclass(frozen=True)
class Domain:
    """The values a numeric setting may take, as data (scikit-learn's
    ``_parameter_constraints`` in spirit): ``bounds`` are those the engine's validators
    accept (:mod:`quests_core._validate` refuses anything outside), ``typical`` the
    range a front end offers first (a widget's soft bounds)."""

    bounds: tuple[float, float]
    typical: tuple[float, float]


#: The domains of the numeric descriptor and kernel settings: k (neighbours),
#: cutoff (Å) and bandwidth h (1/Å). Front ends take their bounds from here.
DOMAINS = {
    "k": Domain((1, MAX_K), (2, 128)),
    "cutoff": Domain((MIN_CUTOFF, MAX_CUTOFF), (1.0, 20.0)),
    "bandwidth": Domain((MIN_BANDWIDTH, MAX_BANDWIDTH), (1e-4, 1.0)),
}
#: Length of one MD step (fs) assumed for files that record MD step numbers, not times
#: (LAMMPS dumps): 1 fs, the default time step of LAMMPS's metal units.
LAMMPS_TIMESTEP_FS = 1.0


def bandwidth_from_volume(volume_per_atom):
    """Bandwidth (Å^-1) for a volume per atom (Å^3/atom), the rule of SPEC section 2.

    ``h(V) = 0.0897141 exp(-0.5 (V / 10.896)^2) + 0.0119417``
    """
    v = np.asarray(volume_per_atom, dtype=np.float64)
    if not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise QuestsError(f"volume per atom must be finite and > 0 Å^3, got {volume_per_atom!r}")
    h = 0.0897141 * np.exp(-0.5 * (v / 10.896) ** 2) + 0.0119417
    return float(h) if h.ndim == 0 else h


def normalize_species(species: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """The one species normaliser: ``None``/empty -> ``None``, else a sorted tuple.

    Accepts ``"Cu,Au"``, ``"Cu Au"``, ``["Au", "Cu", "Cu"]``.
    """
    if species is None:
        return None
    if isinstance(species, str):
        items = [s for s in species.replace(",", " ").split() if s]
    else:
        try:
            items = [s if isinstance(s, str) else str(s) for s in species]
        except TypeError:
            raise QuestsError(
                f"species must be element symbols, got {type(species).__name__}"
            ) from None
    items = sorted({s.strip() for s in items if s and s.strip()})
    if not items:
        return None
    from ase.data import atomic_numbers

    bad = [s for s in items if s not in atomic_numbers or s == "X"]
    if bad:
        raise QuestsError(f"species: {', '.join(map(repr, bad))} is not an element symbol")
    return tuple(items)


def volume_rule_bandwidth(
    volume_per_atom: Iterable[float], n_atoms: Iterable[int] | None = None, *,
    source: str | None = None,
) -> float:
    """h(V) of the atom-weighted mean volume per atom of frames (SPEC section 2).

    Parameters
    ----------
    volume_per_atom : array of float
        Volume per atom of each frame (Å^3/atom); NaN for a frame without a cell.
    n_atoms : array of int, optional
        Atoms of each frame; equal weights when omitted.
    source : str, optional
        Name of the data, for the error message.

    Raises
    ------
    QuestsError
        When no frame has a periodic cell (no finite volume).
    """
    v = np.asarray(list(volume_per_atom) if not isinstance(volume_per_atom, np.ndarray)
                   else volume_per_atom, dtype=float).ravel()
    w = (np.ones_like(v) if n_atoms is None
         else np.asarray(list(n_atoms) if not isinstance(n_atoms, np.ndarray) else n_atoms,
                         dtype=float).ravel())
    if w.shape != v.shape:
        raise QuestsError(f"volume rule: {v.size} volumes for {w.size} atom counts")
    ok = np.isfinite(v) & (v > 0) & (w > 0)
    if not ok.any():
        where = f"{source}: " if source else ""
        raise QuestsError(f"{where}the volume rule needs periodic cells (no volume per atom)")
    mean_v = float(np.sum(v[ok] * w[ok]) / np.sum(w[ok]))
    return float(bandwidth_from_volume(mean_v))


def frames_bandwidth(frames, *, source: str | None = None) -> float:
    """:func:`volume_rule_bandwidth` of a frames table (``volume_per_atom``, ``n_atoms``)."""
    n = frames["n_atoms"].to_numpy(float) if "n_atoms" in frames else None
    return volume_rule_bandwidth(frames["volume_per_atom"].to_numpy(float), n, source=source)


@dataclass(frozen=True)
class Settings:
    """Descriptor and kernel settings shared by the CLI, the dashboard and the stores.

    Parameters
    ----------
    k : int
        Nearest neighbours per environment.
    cutoff : float
        Cutoff radius (Å).
    species : tuple of str or None
        Species of the multicomponent descriptor; ``None`` for the single one.
    bandwidth : float
        Kernel bandwidth h (1/Å) when ``bandwidth_rule == "fixed"``.
    bandwidth_rule : {"fixed", "volume"}
        ``"volume"``: h from the reference's mean volume per atom.
    precision : {"float64", "float32"}
        Precision of the kernel sums.
    backend : {"auto", "numba", "torch-cuda", "torch-cpu"}
        Kernel backend (:mod:`quests_core.backend`).
    threads : int or None
        Threads for descriptors and kernels; ``None`` is all cores.
    chunk_atoms : int
        Atoms per descriptor batch while streaming files.
    seed : int
        Seed of every random subsample.
    """

    k: int = 32
    cutoff: float = 5.0
    species: tuple[str, ...] | None = None
    bandwidth: float = 0.015
    bandwidth_rule: str = "fixed"
    precision: str = "float64"
    backend: str = "auto"
    threads: int | None = None
    chunk_atoms: int = 20_000
    seed: int = 0

    def __post_init__(self) -> None:
        k, cutoff = check_k_cutoff(self.k, self.cutoff)
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "cutoff", cutoff)
        object.__setattr__(self, "species", normalize_species(self.species))
        harr, scalar = check_bandwidth(self.bandwidth)
        if not scalar:
            raise QuestsError("bandwidth must be one number (1/Å)")
        object.__setattr__(self, "bandwidth", float(harr[0]))
        for name, allowed in (("bandwidth_rule", BANDWIDTH_RULES), ("precision", PRECISIONS),
                              ("backend", BACKENDS)):
            value = getattr(self, name)
            if value not in allowed:
                raise QuestsError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.threads is not None:
            object.__setattr__(self, "threads", check_int(self.threads, "threads", 1, 4096))
        object.__setattr__(self, "chunk_atoms",
                           check_int(self.chunk_atoms, "chunk_atoms", 1, 100_000_000))
        object.__setattr__(self, "seed", check_int(self.seed, "seed", 0, 2**63 - 1))

    # -- construction -------------------------------------------------------
    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Settings:
        """Settings from a mapping; keys that are not fields are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})

    def replace(self, **changes: Any) -> Settings:
        """A validated copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """Plain values (picklable, JSON-able except ``species`` as a list)."""
        out = dataclasses.asdict(self)
        out["species"] = list(self.species) if self.species else None
        return out

    # -- views used by the engine ---------------------------------------------
    @property
    def species_list(self) -> list[str] | None:
        """The species as the engine takes them: a list, or None for the single-component
        descriptor (the one conversion of :attr:`species`)."""
        return list(self.species) if self.species else None

    def descriptor_kwargs(self) -> dict[str, Any]:
        """Keywords of :func:`quests_core.descriptors.descriptors`."""
        return {"k": self.k, "cutoff": self.cutoff, "species": self.species_list}

    def kernel_kwargs(self) -> dict[str, Any]:
        """Keywords of the entropy functions (:mod:`quests_core.entropy`)."""
        return {"precision": self.precision, "n_threads": self.threads, "backend": self.backend}

    def resolve_bandwidth(self, frames=None, *, source: str | None = None) -> float:
        """h to use: ``bandwidth``, or the volume rule of ``frames`` (a frames table)."""
        if self.bandwidth_rule == "fixed":
            return self.bandwidth
        if frames is None:
            raise QuestsError("the volume rule needs the reference's frames")
        return frames_bandwidth(frames, source=source)


#: The defaults of every front end.
DEFAULTS = Settings()
