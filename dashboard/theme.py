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
    """Make Panel resolve every stylesheet to the server or inline, never to its CDN.

    Panel picks the URL prefix of a component's stylesheets from the session
    document's template variables; for models built without one (components
    created after the first render, e.g. in a callback or a freshly shown tab)
    it falls back to ``cdn.holoviz.org`` even when the server serves the files
    itself (panel#7073, #8408, #8707). This wraps ``patch_stylesheet``, the one
    function every such path calls:

    - served (``panel serve``): the fallback becomes the server's own
      ``static/extensions/panel/`` path;
    - in a notebook with inline resources (:func:`dashboard.show`), where no
      server of Panel's files exists: a CDN stylesheet becomes a ``data:`` URL of
      the same file from the installed Panel (its relative ``url(...)`` assets
      inlined too), so a tab built after the first render needs no other host.

    Idempotent.
    """
    import panel.io.resources as resources
    import panel.reactive as reactive
    import panel.theme.base as theme_base

    original = resources.patch_stylesheet
    if getattr(original, "_quests_local", False):
        return

    def patch_stylesheet(stylesheet, dist_url):
        inline = notebook_inline()
        if dist_url == resources.CDN_DIST and not inline and not resources.use_cdn():
            dist_url = resources.get_dist_path(cdn=False)
        original(stylesheet, dist_url)
        if inline:
            try:
                url = stylesheet.url
            except Exception:  # not an imported stylesheet
                return
            if isinstance(url, str) and url.startswith(resources.CDN_DIST):
                data = css_data_url(url[len(resources.CDN_DIST):].split("?")[0])
                if data is not None:
                    stylesheet.url = data

    patch_stylesheet._quests_local = True
    for module in (resources, reactive, theme_base):
        if getattr(module, "patch_stylesheet", None) is original:
            module.patch_stylesheet = patch_stylesheet


def notebook_inline() -> bool:
    """True in a notebook kernel whose Panel resources are inline (no Bokeh server)."""
    import panel as pn

    if not pn.config.inline:
        return False
    doc = pn.state.curdoc
    return doc is None or doc.session_context is None


#: MIME types of the assets a Panel stylesheet refers to.
_ASSET_TYPES = {".svg": "image/svg+xml", ".png": "image/png", ".gif": "image/gif",
                ".woff2": "font/woff2", ".woff": "font/woff", ".ttf": "font/ttf",
                ".css": "text/css"}


@lru_cache(maxsize=256)
def css_data_url(relative: str) -> str | None:
    """``data:`` URL of the stylesheet ``relative`` to Panel's ``dist`` folder, with
    the files its relative ``url(...)`` references name inlined as ``data:`` URLs
    too; None if Panel has no such file."""
    import base64
    import re

    from panel.io.resources import DIST_DIR

    path = (DIST_DIR / relative).resolve()
    if not path.is_file() or DIST_DIR.resolve() not in path.parents:
        return None
    css = path.read_text(encoding="utf-8")

    def inline_asset(match: re.Match) -> str:
        target = match.group(2)
        if re.match(r"^(data:|https?:|/|#)", target):
            return match.group(0)
        asset = (path.parent / target.split("?")[0].split("#")[0]).resolve()
        kind = _ASSET_TYPES.get(asset.suffix.lower())
        if kind is None or not asset.is_file():
            return match.group(0)
        encoded = base64.b64encode(asset.read_bytes()).decode("ascii")
        return f'url("data:{kind};base64,{encoded}")'

    css = re.sub(r"""url\((['"]?)([^'")]+)\1\)""", inline_asset, css)
    return "data:text/css;base64," + base64.b64encode(css.encode("utf-8")).decode("ascii")


_DESIGN = None


def design():
    """The (cached) offline Fast design class."""
    global _DESIGN
    if _DESIGN is None:
        _DESIGN = offline_fast_design()
    return _DESIGN
