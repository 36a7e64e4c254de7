"""Classical nucleation theory (CNT) for the solid-like clusters of a trajectory.

What it holds
-------------
- Units: physical constants and the conversions J/m^2 <-> eV/Å^2 and
  kJ/mol -> eV/atom.
- The material constants of CNT (:class:`CNTConstants`, :func:`cnt_constants`):
  melting temperature, latent heat, volume per atom (given, or from a mass
  density or a number density) and the interfacial energy range.
- Size <-> radius of a spherical cluster, latent heat per volume, the critical
  radius r*, the critical-size band over an interfacial energy range
  (per temperature, or one band at the mean temperature of the pooled frames),
  the pre-nucleation frames, and the fit of a cluster-size distribution to the
  CNT form (:func:`fit_cnt_distribution`).

Conventions (docs/spec.md, "Conventions of the analyses")
---------------------------------------------------------
- The constants of the Cu EAM potential of the paper (SPEC section 3) are the
  defaults **only for Cu**: :func:`cnt_constants` raises for any other element
  (or a mixture) unless the missing values are given. The functions below
  take every material constant explicitly; none defaults to Cu.
- The critical band of a set of pooled frames is computed at their mean
  temperature (mean undercooling), never frame by frame: the instantaneous
  temperature of a frame fluctuates and would make the band jitter.
- The CNT fit is the paper's by default: ordinary (unweighted) least squares
  on log N (``weights="none"``); the count-weighted (Poisson) fit is an option
  (``weights="poisson"``). On the bundled quench the weighting alone moves
  gamma_SL from 0.121 (unweighted) to 0.166 J/m^2 (Poisson) at one volume.
- Two volumes per atom, as in the paper: the fit sizes its clusters
  (n V = (4/3) pi r^3) with ``CNTConstants.fit_v_atom`` (Cu: the density
  8.96 g/cm^3, 11.78 Å^3/atom) while the critical band uses
  ``CNTConstants.v_atom`` (Cu: 12.893 Å^3/atom). For any other element the
  fit's volume defaults to the band's (the one given).

Invariants
----------
- Lengths in Å, volumes in Å^3, energies in eV, temperatures in K inside the
  computations; interfacial energies are accepted in J/m^2 and latent heats in
  kJ/mol and converted with the explicit constants below.
- ``n V_atom = (4/3) pi r^3`` relates a cluster size n to its radius r.
- At or above the melting temperature the critical radius and size are
  ``inf``.
- Pure functions of numpy arrays; memory O(number of sizes or frames).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quests_core.errors import QuestsError

# ---------------------------------------------------------------------------
# Physical constants and unit conversions (CODATA 2018, exact where defined)
# ---------------------------------------------------------------------------

ELEMENTARY_CHARGE = 1.602176634e-19  # J per eV
AVOGADRO = 6.02214076e23  # 1/mol
BOLTZMANN_EV = 8.617333262e-5  # eV/K

#: 1 J/m^2 expressed in eV/Å^2 (1 m^2 = 1e20 Å^2).
J_PER_M2_TO_EV_PER_A2 = 1.0 / ELEMENTARY_CHARGE / 1e20
#: 1 kJ/mol expressed in eV per atom.
KJ_PER_MOL_TO_EV_PER_ATOM = 1e3 / (AVOGADRO * ELEMENTARY_CHARGE)
#: 1 cm^3 in Å^3.
CM3_TO_A3 = 1e24

# CNT constants for the Cu EAM potential used in the QUESTS paper (SPEC section 3).
CU_T_MELT = 1323.0  # K
CU_LATENT_HEAT = 11.99  # kJ/mol
CU_V_ATOM = 12.893  # Å^3/atom
CU_GAMMA_SL_RANGE = (0.177, 0.221)  # J/m^2
#: Molar mass of Cu, g/mol (IUPAC; the value of ase.data.atomic_masses).
CU_MOLAR_MASS = 63.546
#: Mass density of Cu with which the paper sizes the clusters of its CNT fit, g/cm^3
#: (8,960 kg/m^3).
CU_FIT_DENSITY = 8.96
#: Volume per atom of the CNT fit's cluster radii for Cu: 11.777 Å^3/atom (the band
#: uses CU_V_ATOM).
CU_FIT_V_ATOM = CU_MOLAR_MASS / (CU_FIT_DENSITY * AVOGADRO) * CM3_TO_A3

#: Weightings of the CNT fit; the first (the paper's, unweighted) is the default.
FIT_WEIGHTS = ("none", "poisson")
#: How the fit weights are named in words (outputs and the dashboard's selector).
FIT_WEIGHT_WORDS = {
    "none": "unweighted least squares on log N (the paper's)",
    "poisson": "Poisson-weighted least squares on log N (each size weighted by its count)",
}


def j_per_m2_to_ev_per_a2(gamma: float | np.ndarray) -> float | np.ndarray:
    """Convert an interfacial energy from J/m^2 to eV/Å^2."""
    return np.asarray(gamma, dtype=float) * J_PER_M2_TO_EV_PER_A2


def ev_per_a2_to_j_per_m2(gamma: float | np.ndarray) -> float | np.ndarray:
    """Convert an interfacial energy from eV/Å^2 to J/m^2."""
    return np.asarray(gamma, dtype=float) / J_PER_M2_TO_EV_PER_A2


def kj_per_mol_to_ev_per_atom(energy: float | np.ndarray) -> float | np.ndarray:
    """Convert a molar energy from kJ/mol to eV per atom."""
    return np.asarray(energy, dtype=float) * KJ_PER_MOL_TO_EV_PER_ATOM


# ---------------------------------------------------------------------------
# Material constants
# ---------------------------------------------------------------------------


def _positive(value: float, what: str) -> float:
    v = float(value)
    if not (np.isfinite(v) and v > 0):
        raise QuestsError(f"{what} must be positive, got {value}")
    return v


def atomic_volume(
    element: str | None = None,
    *,
    v_atom: float | None = None,
    density: float | None = None,
    number_density: float | None = None,
) -> float:
    """Volume per atom (Å^3/atom) of the solid for the size <-> radius map.

    Give at most one of ``v_atom`` (Å^3/atom), ``number_density``
    (atoms/Å^3) or ``density`` (g/cm^3, with the element's atomic mass). With
    none of them the Cu EAM value of the paper (12.893 Å^3/atom) is used, but
    only when ``element`` is ``"Cu"``.

    Raises
    ------
    QuestsError
        When several are given, a value is not positive, ``density`` is given
        without a single element, or nothing is given for an element other
        than Cu.
    """
    given = {name: value for name, value in
             (("v_atom", v_atom), ("density", density), ("number_density", number_density))
             if value is not None}
    if len(given) > 1:
        raise QuestsError(f"give one of volume per atom, density or number density, "
                          f"not {' and '.join(given)}")
    if v_atom is not None:
        return _positive(v_atom, "volume per atom (Å^3/atom)")
    if number_density is not None:
        return 1.0 / _positive(number_density, "number density (atoms/Å^3)")
    if density is not None:
        from ase.data import atomic_masses, atomic_numbers

        rho = _positive(density, "density (g/cm^3)")
        if element not in atomic_numbers:
            raise QuestsError(
                f"a density in g/cm^3 needs one element for the atomic mass, got {element!r}; "
                "give the number density (atoms/Å^3) or the volume per atom (Å^3) instead")
        mass = float(atomic_masses[atomic_numbers[element]])  # g/mol
        return mass / (rho * AVOGADRO) * CM3_TO_A3
    if element == "Cu":
        return CU_V_ATOM
    raise QuestsError(
        f"no volume per atom for {element or 'this trajectory'}: the default 12.893 Å^3/atom "
        "is Cu's; give the density (g/cm^3), the number density (atoms/Å^3) or the volume "
        "per atom (Å^3)")


@dataclass(frozen=True)
class CNTConstants:
    """Material constants of classical nucleation theory.

    Attributes
    ----------
    element : str or None
        Element they belong to (``None`` for a mixture).
    t_melt : float
        Melting temperature, K.
    latent_heat : float
        Latent heat of melting, kJ/mol.
    v_atom : float
        Volume per atom of the solid, Å^3/atom.
    gamma_range : (float, float)
        Range of the solid-liquid interfacial energy, J/m^2.
    fit_v_atom : float or None
        Volume per atom that sizes the clusters of the CNT fit, Å^3/atom
        (Cu: 11.78, from 8.96 g/cm^3); ``None``: ``v_atom``. ``v_atom`` is the
        critical band's.
    """

    element: str | None
    t_melt: float
    latent_heat: float
    v_atom: float
    gamma_range: tuple[float, float]
    fit_v_atom: float | None = None

    @property
    def v_fit(self) -> float:
        """Volume per atom of the fit's cluster radii (Å^3/atom)."""
        return self.v_atom if self.fit_v_atom is None else float(self.fit_v_atom)

    def kwargs(self) -> dict[str, float]:
        """``t_melt``, ``latent_heat`` and ``v_atom`` as keywords of the functions below."""
        return {"t_melt": self.t_melt, "latent_heat": self.latent_heat, "v_atom": self.v_atom}


def cnt_constants(
    element: str | None,
    *,
    t_melt: float | None = None,
    latent_heat: float | None = None,
    gamma_range: tuple[float, float] | None = None,
    v_atom: float | None = None,
    density: float | None = None,
    number_density: float | None = None,
    fit_v_atom: float | None = None,
    fit_density: float | None = None,
    fit_number_density: float | None = None,
) -> CNTConstants:
    """The CNT constants of ``element``: the given values, else the paper's Cu values for Cu.

    Parameters
    ----------
    element : str or None
        The one element of the trajectory (``None`` or a mixture: every value
        must be given).
    t_melt, latent_heat, gamma_range
        K, kJ/mol and J/m^2 (low, high).
    v_atom, density, number_density
        The volume per atom of the critical band, see :func:`atomic_volume`
        (Cu: 12.893 Å^3/atom).
    fit_v_atom, fit_density, fit_number_density
        The volume per atom that sizes the clusters of the CNT fit, the same
        way (Cu: the paper's 8.96 g/cm^3, 11.78 Å^3/atom; any other element:
        the band's volume).

    Raises
    ------
    QuestsError
        For an element other than Cu when a value is missing (the message
        names what to give), or for a value that is not positive.
    """
    missing = [name for name, value in (("melting temperature (K)", t_melt),
                                        ("latent heat (kJ/mol)", latent_heat),
                                        ("interfacial energy range (J/m^2)", gamma_range))
               if value is None]
    if v_atom is None and density is None and number_density is None:
        missing.append("density (g/cm^3), the number density (atoms/Å^3) or the volume per "
                       "atom (Å^3)")
    if missing and element != "Cu":
        raise QuestsError(f"no CNT constants for {element or 'this trajectory'} (the defaults "
                          f"are Cu's): give the {', the '.join(missing)}")
    volume = atomic_volume(element, v_atom=v_atom, density=density,
                           number_density=number_density)
    if fit_v_atom is None and fit_density is None and fit_number_density is None:
        fit_volume = CU_FIT_V_ATOM if element == "Cu" else volume
    else:
        fit_volume = atomic_volume(element, v_atom=fit_v_atom, density=fit_density,
                                   number_density=fit_number_density)
    t_m = _positive(CU_T_MELT if t_melt is None else t_melt, "melting temperature (K)")
    lat = _positive(CU_LATENT_HEAT if latent_heat is None else latent_heat,
                    "latent heat (kJ/mol)")
    lo, hi = (float(v) for v in (CU_GAMMA_SL_RANGE if gamma_range is None else gamma_range))
    if lo < 0 or lo > hi:
        raise QuestsError(f"interfacial energy range ({lo}, {hi}) must be 0 <= low <= high")
    return CNTConstants(element, t_m, lat, volume, (lo, hi), fit_volume)


#: The constants of the Cu EAM potential of the paper (band 12.893, fit 11.78 Å^3/atom).
CU = CNTConstants("Cu", CU_T_MELT, CU_LATENT_HEAT, CU_V_ATOM, CU_GAMMA_SL_RANGE, CU_FIT_V_ATOM)


# ---------------------------------------------------------------------------
# Sizes, radii and the critical nucleus
# ---------------------------------------------------------------------------


def size_to_radius(n: float | np.ndarray, v_atom: float) -> float | np.ndarray:
    """Radius (Å) of a sphere holding ``n`` atoms: n V_atom = (4/3) pi r^3."""
    return np.cbrt(3.0 * np.asarray(n, dtype=float) * v_atom / (4.0 * np.pi))


def radius_to_size(r: float | np.ndarray, v_atom: float) -> float | np.ndarray:
    """Number of atoms in a sphere of radius ``r`` (Å)."""
    return 4.0 * np.pi * np.asarray(r, dtype=float) ** 3 / (3.0 * v_atom)


def latent_heat_per_volume(latent_heat: float, v_atom: float) -> float:
    """Latent heat of melting per volume in eV/Å^3 from kJ/mol and Å^3/atom."""
    if not v_atom > 0:
        raise QuestsError(f"atomic volume must be positive, got {v_atom}")
    return float(kj_per_mol_to_ev_per_atom(latent_heat)) / v_atom


def cnt_critical_radius(
    temperature: float | np.ndarray,
    gamma: float | np.ndarray,
    *,
    t_melt: float,
    latent_heat: float,
    v_atom: float,
) -> float | np.ndarray:
    """CNT critical radius r* = 2 gamma T_m / (dH_m,vol (T_m - T)), in Å.

    Parameters
    ----------
    temperature : float or array
        Temperature(s) in K. At or above ``t_melt`` the radius is ``inf``.
    gamma : float or array
        Solid-liquid interfacial energy in J/m^2.
    t_melt : float
        Melting temperature in K.
    latent_heat : float
        Latent heat of melting in kJ/mol.
    v_atom : float
        Atomic volume in Å^3/atom.
    """
    t = np.asarray(temperature, dtype=float)
    if not t_melt > 0:
        raise QuestsError(f"melting temperature must be positive, got {t_melt}")
    if np.any(np.asarray(gamma) < 0):
        raise QuestsError("interfacial energy must be non-negative")
    g = j_per_m2_to_ev_per_a2(gamma)
    dh_vol = latent_heat_per_volume(latent_heat, v_atom)
    undercooling = t_melt - t
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(undercooling > 0, 2.0 * g * t_melt / (dh_vol * undercooling), np.inf)
    return float(r) if np.ndim(r) == 0 else r


@dataclass(frozen=True)
class CriticalBand:
    """Critical radius and size band for a range of interfacial energies.

    All arrays have the shape of the temperature input (at least 1-D); radii
    in Å, sizes in atoms; ``inf`` at or above the melting temperature.
    """

    temperature: np.ndarray
    r_min: np.ndarray
    r_max: np.ndarray
    n_min: np.ndarray
    n_max: np.ndarray
    gamma_range: tuple[float, float]


def critical_size_band(
    temperature: float | np.ndarray,
    gamma_range: tuple[float, float],
    *,
    t_melt: float,
    latent_heat: float,
    v_atom: float,
) -> CriticalBand:
    """Band of CNT critical radii / cluster sizes over an interfacial energy range.

    One band per temperature given. For the frames pooled in a size
    distribution use :func:`pooled_critical_band` (one band at their mean
    temperature).

    Parameters
    ----------
    temperature : float or array
        Temperature(s) in K.
    gamma_range : (low, high)
        Interfacial energy range in J/m^2.
    """
    lo, hi = (float(v) for v in gamma_range)
    if lo > hi:
        raise QuestsError(f"interfacial energy range ({lo}, {hi}) is reversed")
    t = np.atleast_1d(np.asarray(temperature, dtype=float))
    kwargs = dict(t_melt=t_melt, latent_heat=latent_heat, v_atom=v_atom)
    r_lo = np.asarray(cnt_critical_radius(t, lo, **kwargs))
    r_hi = np.asarray(cnt_critical_radius(t, hi, **kwargs))
    return CriticalBand(
        temperature=t,
        r_min=r_lo,
        r_max=r_hi,
        n_min=np.asarray(radius_to_size(r_lo, v_atom)),
        n_max=np.asarray(radius_to_size(r_hi, v_atom)),
        gamma_range=(lo, hi),
    )


def pooled_temperature(temperature: np.ndarray, frames=None) -> float:
    """Mean temperature (K) of the pooled frames: the temperature of their mean undercooling.

    Parameters
    ----------
    temperature : (n_frames,) array
        Temperature of every frame (NaN where unknown).
    frames : sequence of int, optional
        Frames pooled; all when omitted.

    Raises
    ------
    QuestsError
        When no frame is chosen or a chosen frame has no temperature.
    """
    t = np.asarray(temperature, dtype=float).ravel()
    idx = np.arange(len(t)) if frames is None else np.asarray(list(frames), dtype=np.int64)
    if len(idx) == 0:
        raise QuestsError("no frames pooled: no mean temperature")
    if np.any((idx < -len(t)) | (idx >= len(t))):
        raise QuestsError(f"pooled frames out of range (trajectory has {len(t)})")
    chosen = t[idx]
    bad = np.flatnonzero(~np.isfinite(chosen))
    if len(bad):
        raise QuestsError("the pooled frames need a temperature each", index=int(idx[bad[0]]))
    return float(np.mean(chosen))


def pooled_critical_band(
    temperature: np.ndarray,
    gamma_range: tuple[float, float],
    frames=None,
    *,
    t_melt: float,
    latent_heat: float,
    v_atom: float,
) -> CriticalBand:
    """One critical band at the mean temperature of the pooled frames.

    The frames of a size distribution are pooled, so their critical size is
    the one of their mean undercooling T_m - mean(T), the temperature at which
    :func:`fit_cnt_distribution` fits them too. Returns a :class:`CriticalBand`
    with arrays of shape (1,).
    """
    t_mean = pooled_temperature(temperature, frames)
    return critical_size_band(t_mean, gamma_range, t_melt=t_melt, latent_heat=latent_heat,
                              v_atom=v_atom)


def pre_nucleation_frames(largest: np.ndarray, critical_min) -> np.ndarray:
    """Frames before nucleation: undercooled and before the critical size is first reached.

    Parameters
    ----------
    largest : (n_frames,) array
        Largest cluster of each frame.
    critical_min : float or (n_frames,) array
        Lower critical size (atoms); one value for all frames (a pooled band)
        or one per frame. ``inf`` marks a frame at or above the melting point:
        with a pooled value pass ``np.where(temperature < t_melt, n_min, inf)``
        so that frames of the melt above T_m are left out.

    Returns
    -------
    int64 array
        The undercooled frames (finite critical size) before the first frame
        whose largest cluster reaches the critical size. When the first
        undercooled frame already reaches it, every undercooled frame; when
        no frame is undercooled, every frame.
    """
    big = np.asarray(largest, dtype=float).ravel()
    crit = np.broadcast_to(np.asarray(critical_min, dtype=float), big.shape)
    frames = np.arange(len(big), dtype=np.int64)
    undercooled = np.isfinite(crit)
    if not undercooled.any():
        return frames
    reached = np.flatnonzero(undercooled & (big >= np.where(undercooled, crit, 0.0)))
    end = reached[0] if len(reached) else len(big)
    pre = frames[undercooled & (frames < end)]
    return pre if len(pre) else frames[undercooled]


# ---------------------------------------------------------------------------
# The CNT fit of a cluster-size distribution
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CNTFit:
    """Fit of a cluster-size distribution to the CNT form.

    log N(n) = log N0 - (4 pi r^3 / 3kT) dg_SL - (4 pi r^2 / kT) gamma_SL,
    with n V_atom = (4/3) pi r^3.

    Attributes
    ----------
    n0, n0_err : float
        Prefactor (clusters) and its standard error.
    dg_sl, dg_sl_err : float
        Free-energy difference per volume, eV/Å^3.
    gamma_sl, gamma_sl_err : float
        Interfacial energy, eV/Å^2.
    covariance : (3, 3) array
        Covariance of (log N0, dg_sl, gamma_sl).
    temperature : float
        Temperature of the fit (K).
    v_atom : float
        Volume per atom of the fit's size <-> radius map (Å^3/atom).
    weights : str
        ``"none"`` (unweighted, the paper's) or ``"poisson"``.
    """

    n0: float
    n0_err: float
    dg_sl: float
    dg_sl_err: float
    gamma_sl: float
    gamma_sl_err: float
    covariance: np.ndarray
    temperature: float
    v_atom: float
    weights: str = FIT_WEIGHTS[0]

    def describe(self, band_v_atom: float | None = None) -> str:
        """One line naming the weighting and the volumes per atom used."""
        text = (f"{FIT_WEIGHT_WORDS.get(self.weights, self.weights)} at {self.temperature:.1f} "
                f"K; cluster radii from {self.v_atom:.5g} Å^3/atom")
        if band_v_atom is not None:
            text += f" (critical band: {float(band_v_atom):.5g} Å^3/atom)"
        return text

    def problem(self) -> str:
        """Why the fitted numbers are not physical ("" when they are): an interfacial
        energy that is not positive or whose standard error exceeds it (relative error
        above 100 %), a prefactor N0 that is not finite and positive or whose error
        exceeds it. Front ends show "no reliable fit: <this>" instead of the values."""
        reasons = []
        gamma, gamma_err = self.gamma_sl_j_m2, self.gamma_sl_err_j_m2
        if not np.isfinite(gamma) or gamma <= 0:
            reasons.append(f"gamma_SL = {gamma:.3g} J/m^2 is not positive")
        elif not np.isfinite(gamma_err) or gamma_err > gamma:
            reasons.append(f"gamma_SL = {gamma:.3g} +- {gamma_err:.3g} J/m^2 has a relative "
                           "error above 100 %")
        if not np.isfinite(self.n0) or self.n0 <= 0:
            reasons.append(f"the prefactor N0 = {self.n0:.3g} is not a finite positive number")
        elif not np.isfinite(self.n0_err) or self.n0_err > self.n0:
            reasons.append(f"the prefactor N0 = {self.n0:.3g} +- {self.n0_err:.3g} has a "
                           "relative error above 100 %")
        return "; ".join(reasons)

    @property
    def gamma_sl_j_m2(self) -> float:
        """Interfacial energy in J/m^2."""
        return float(ev_per_a2_to_j_per_m2(self.gamma_sl))

    @property
    def gamma_sl_err_j_m2(self) -> float:
        return float(ev_per_a2_to_j_per_m2(self.gamma_sl_err))

    @property
    def dg_sl_per_atom(self) -> float:
        """Free-energy difference per atom, eV/atom."""
        return self.dg_sl * self.v_atom

    def log_counts(self, sizes: np.ndarray) -> np.ndarray:
        """Model log N at the given cluster sizes."""
        return cnt_log_distribution(
            sizes, np.log(self.n0), self.dg_sl, self.gamma_sl, self.temperature, self.v_atom
        )


def cnt_log_distribution(
    sizes: np.ndarray,
    log_n0: float,
    dg_sl: float,
    gamma_sl: float,
    temperature: float,
    v_atom: float,
) -> np.ndarray:
    """CNT log cluster count for sizes ``n`` (dg in eV/Å^3, gamma in eV/Å^2)."""
    n = np.asarray(sizes, dtype=float)
    kt = BOLTZMANN_EV * temperature
    r = size_to_radius(n, v_atom)
    volume = 4.0 * np.pi * r**3 / 3.0
    area = 4.0 * np.pi * r**2
    return log_n0 - volume * dg_sl / kt - area * gamma_sl / kt


def fit_cnt_distribution(
    sizes: np.ndarray,
    counts: np.ndarray,
    temperature: float,
    *,
    v_atom: float,
    weights: str = FIT_WEIGHTS[0],
) -> CNTFit:
    """Fit a cluster-size distribution to the CNT form by linear least squares on log N.

    Parameters
    ----------
    sizes : (m,) array
        Cluster sizes (atoms).
    counts : (m,) array
        Number of clusters of each size (sizes with zero count are skipped).
    temperature : float
        Temperature in K: the mean over the pooled frames
        (:func:`pooled_temperature`).
    v_atom : float
        Volume per atom in Å^3 that sizes the clusters, n V = (4/3) pi r^3 (no
        default; :attr:`CNTConstants.v_fit`, for Cu the paper's 11.78 Å^3/atom
        from 8.96 g/cm^3, not the band's 12.893).
    weights : {"none", "poisson"}
        ``"none"`` (the default, the paper's): ordinary least squares on
        log N, every size weighs the same; the covariance is scaled by the
        residual variance. ``"poisson"``: each size is weighted with its
        count N. The count of a bin is Poisson distributed, its variance is
        its expectation, so var(log N) ~ 1/N and weighted least squares on
        log N with weights N is the large-count approximation of the maximum
        likelihood fit; the rare large clusters, whose log counts are the
        noisiest, weigh least. Uncertainties are absolute (from the Poisson
        variance).

    Returns
    -------
    CNTFit
        Parameters with standard errors from the fit covariance.

    Notes
    -----
    The model is linear in its parameters: log N = c0 - c1 n - c2 n^(2/3) with
    c1 = V_atom dg/kT and c2 = 4 pi (3 V_atom / 4 pi)^(2/3) gamma/kT, solved
    with :func:`numpy.linalg.lstsq`; the covariance
    (A^T W A)^-1 (times the residual variance RSS/(m - 3) without weights)
    converts exactly through the linear maps.
    """
    if weights not in FIT_WEIGHTS:
        raise QuestsError(f"unknown CNT fit weights {weights!r}; use one of {FIT_WEIGHTS}")
    n = np.asarray(sizes, dtype=float).ravel()
    c = np.asarray(counts, dtype=float).ravel()
    if n.shape != c.shape:
        raise QuestsError(f"{n.size} cluster sizes but {c.size} counts")
    if not temperature > 0:
        raise QuestsError(f"temperature must be positive for the CNT fit, got {temperature}")
    if not v_atom > 0:
        raise QuestsError(f"atomic volume must be positive, got {v_atom}")
    keep = (c > 0) & (n > 0)
    n, c = n[keep], c[keep]
    if len(n) < 4:
        raise QuestsError(
            f"the CNT fit needs at least 4 distinct cluster sizes with counts, got {len(n)}"
        )
    y = np.log(c)
    design = np.stack([np.ones_like(n), -n, -(n ** (2.0 / 3.0))], axis=1)
    w = c if weights == "poisson" else np.ones_like(n)
    root = np.sqrt(w)
    popt, *_ = np.linalg.lstsq(design * root[:, None], y * root, rcond=None)
    pcov = np.linalg.pinv(design.T @ (design * w[:, None]))
    if weights == "none":
        resid = y - design @ popt
        pcov = pcov * float(resid @ resid) / (len(n) - 3)
    kt = BOLTZMANN_EV * temperature
    area_per_n23 = 4.0 * np.pi * (3.0 * v_atom / (4.0 * np.pi)) ** (2.0 / 3.0)
    scale = np.diag([1.0, kt / v_atom, kt / area_per_n23])
    cov = scale @ pcov @ scale
    err = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    n0 = float(np.exp(popt[0]))
    return CNTFit(
        n0=n0,
        n0_err=n0 * float(err[0]),
        dg_sl=float(popt[1] * kt / v_atom),
        dg_sl_err=float(err[1]),
        gamma_sl=float(popt[2] * kt / area_per_n23),
        gamma_sl_err=float(err[2]),
        covariance=cov,
        temperature=float(temperature),
        v_atom=float(v_atom),
        weights=weights,
    )


def pre_nucleation_pool(largest: np.ndarray, temperature: np.ndarray, constants,
                        max_rounds: int = 20):
    """The pre-nucleation frames and their one critical band at their mean temperature.

    The pooled frames and their band depend on each other (the frames end where the
    largest cluster first reaches the lower critical size, the band is computed at the
    frames' mean temperature), so both are iterated from every undercooled frame
    (finite temperature below T_m) until the frames stop changing (at most
    ``max_rounds``): :func:`quests_core.analysis.pooled_critical_band` and
    :func:`quests_core.analysis.pre_nucleation_frames` with that one value
    (``inf`` on frames that are not undercooled). On the bundled Cu quench this pools
    frames 1-38 at 794.3 K, as docs/spec.md reports.

    Parameters
    ----------
    largest : (n_frames,) array
        Largest solid-like cluster of each frame.
    temperature : (n_frames,) array
        K, NaN where unknown.
    constants : CNTConstants

    Returns
    -------
    pre : int64 array
        Frames pooled (every frame when none is undercooled).
    band : CriticalBand or None
        The band at their mean temperature; None when no pooled frame is undercooled.
    """
    t = np.asarray(temperature, dtype=float)
    undercooled = np.isfinite(t) & (t < constants.t_melt)
    pool = np.flatnonzero(undercooled)
    if len(pool) == 0:
        return np.arange(len(t), dtype=np.int64), None
    band = None
    for _ in range(max_rounds):
        band = pooled_critical_band(t, constants.gamma_range, pool, **constants.kwargs())
        pre = pre_nucleation_frames(largest, np.where(undercooled, band.n_min[0], np.inf))
        if np.array_equal(pre, pool):
            break
        pool = pre
    else:
        band = pooled_critical_band(t, constants.gamma_range, pool, **constants.kwargs())
    return np.asarray(pool, dtype=np.int64), band
