"""Look of the dashboard: offline template, the dH colour map and shared plot helpers.

Everything the page loads must come from the server itself (the app has to
work with no internet). Panel serves its bundled JavaScript locally; the only
external resource of the Fast template is a Google web font, which
:func:`offline_fast_design` removes.
"""

from __future__ import annotations

from functools import lru_cache

import colorcet as cc
import numpy as np

#: Diverging colour map for dH: blue = known (dH < 0), red = novel (dH > 0)
#: (colorcet's coolwarm, a list of hex colours: no Matplotlib needed).
DH_CMAP: list[str] = list(cc.coolwarm)
#: Axis labels with units.
UNITS: dict[str, str] = {
    "index": "atom index",
    "structure": "frame (structure index)",
    "frame": "frame in file",
    "time": "time (ps)",
    "atom": "atom in frame",
    "x": "x (Å)",
    "y": "y (Å)",
    "z": "z (Å)",
    "dH": "dH (nats)",
    "dH_solid": "dH vs solid (nats)",
    "force_error": "force error (eV/Å)",
    "cluster": "cluster id",
    "H": "H (nats)",
    "mean_dH": "mean dH (nats)",
    "frac_novel": "fraction dH > 0",
    "largest_cluster": "largest solid-like cluster (atoms)",
    "temperature": "temperature (K)",
}
ACCENT = "#0072B5"
#: dynspread settings shared by the Atoms and Structure views (and the warm-up).
SPREAD_THRESHOLD = 0.8
SPREAD_PX = 4


def label(column: str) -> str:
    """Axis label with unit for a table column."""
    return UNITS.get(column, column.replace("_", " "))


def symmetric_clim(
    values: np.ndarray, quantile: float = 0.9, floor: float = 1.0
) -> tuple[float, float]:
    """Colour limits ``(-m, m)`` centred at 0.

    ``m`` is the ``quantile`` of ``|values|``, at least ``floor``: the map
    resolves the known/novel boundary, and very novel atoms (which can reach
    thousands of nats) saturate in red instead of washing everything out.
    """
    v = np.asarray(values)
    if len(v) > 1_000_000:  # a strided subsample is plenty for a quantile
        v = v[:: len(v) // 1_000_000 + 1]
    v = v[np.isfinite(v)].astype(np.float64)
    if len(v) == 0:
        return (-floor, floor)
    m = float(np.quantile(np.abs(v), quantile))
    m = max(m, floor)
    return (-m, m)


@lru_cache(maxsize=1)
def plotly_colorscale(n: int = 11) -> list[list]:
    """The dH colour map as a Plotly colour scale (``[[position, "#rrggbb"], ...]``)."""
    positions = np.linspace(0.0, 1.0, n)
    index = np.round(positions * (len(DH_CMAP) - 1)).astype(int)
    return [[round(float(t), 4), DH_CMAP[i]] for t, i in zip(positions, index, strict=True)]


def offline_fast_design():
    """Panel's Fast design without the Google font (so the page needs no internet).

    Panel resolves a design's bundled files by its class name, so the subclass
    keeps the name ``Fast``.
    """
    from panel.theme.fast import Fast

    resources = {key: value for key, value in Fast._resources.items() if key != "font"}
    return type("Fast", (Fast,), {"_resources": resources, "__module__": __name__})


def keep_assets_local() -> None:
    """Make Panel resolve every stylesheet to the server, never to its CDN.

    Panel picks the URL prefix of a component's stylesheets from the session
    document's template variables; for models built without one (components
    created after the first render, e.g. in a callback or a freshly shown tab)
    it falls back to ``cdn.holoviz.org`` even when the server serves the files
    itself (panel#7073, #8408, #8707). In server mode this wraps
    ``patch_stylesheet`` so that fallback becomes the server's own
    ``static/extensions/panel/`` path. Idempotent; a no-op where Panel is
    configured to load from its CDN (e.g. a notebook without a server).
    """
    import panel.io.resources as resources
    import panel.reactive as reactive

    original = resources.patch_stylesheet
    if getattr(original, "_quests_local", False):
        return

    def patch_stylesheet(stylesheet, dist_url):
        if dist_url == resources.CDN_DIST and not resources.use_cdn():
            dist_url = resources.get_dist_path(cdn=False)
        return original(stylesheet, dist_url)

    patch_stylesheet._quests_local = True
    resources.patch_stylesheet = patch_stylesheet
    reactive.patch_stylesheet = patch_stylesheet


_DESIGN = None


def design():
    """The (cached) offline Fast design class."""
    global _DESIGN
    if _DESIGN is None:
        _DESIGN = offline_fast_design()
    return _DESIGN
