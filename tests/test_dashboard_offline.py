"""The dashboard never points the browser at a CDN: stylesheets of components built
without a session's template variables (Panel's fallback) resolve to the server."""

from __future__ import annotations

import panel as pn
import panel.io.resources as resources
from bokeh.document import Document
from bokeh.models import ImportedStyleSheet

from dashboard.app import load_extensions


def stylesheet_urls(model) -> list[str]:
    return [s.url for s in model.stylesheets if isinstance(s, ImportedStyleSheet)]


def test_components_built_outside_a_session_use_the_servers_static_files():
    load_extensions()
    assert not resources.use_cdn()  # the server serves Panel's files (panel serve default)
    for component in (pn.widgets.Button(label="Compute"), pn.pane.Markdown("**x**"),
                      pn.indicators.Progress(value=3), pn.widgets.Tabulator()):
        urls = stylesheet_urls(component.get_root(Document()))
        assert urls, component
        assert not [u for u in urls if "cdn" in u or u.startswith("http")], urls
        assert all(u.startswith("static/extensions/panel/") for u in urls), urls
    sheet = ImportedStyleSheet(url=f"{resources.CDN_DIST}css/loading.css")
    resources.patch_stylesheet(sheet, resources.CDN_DIST)
    assert sheet.url.startswith("static/extensions/panel/css/loading.css")
    load_extensions()  # idempotent: the wrapper is not wrapped again
    assert getattr(resources.patch_stylesheet, "_quests_local", False)


def test_notebook_stylesheets_become_data_urls(monkeypatch):
    """In a notebook (inline resources, no server) a CDN stylesheet becomes a data: URL
    of the installed Panel's file, its images inlined; paths outside Panel's dist are
    refused."""
    import base64
    import re

    from dashboard.theme import css_data_url

    url = css_data_url("css/loading.css")
    assert url.startswith("data:text/css;base64,")
    css = base64.b64decode(url.split(",", 1)[1]).decode()
    assert "loading" in css
    relative = [u for u in re.findall(r"""url\(['"]?([^'")]+)""", css)
                if not u.startswith(("data:", "http", "/", "#"))]
    assert relative == []  # every asset it names is inline
    assert css_data_url("../__init__.py") is None and css_data_url("css/missing.css") is None
    load_extensions()
    monkeypatch.setattr(pn.config, "inline", True)
    sheet = ImportedStyleSheet(url=f"{resources.CDN_DIST}css/markdown.css")
    resources.patch_stylesheet(sheet, resources.CDN_DIST)
    assert sheet.url == css_data_url("css/markdown.css")
