"""QUESTS dashboard: a Panel + HoloViews + Bokeh + Datashader app.

Serve it with ``python launch.py`` (or ``panel serve dashboard/app.py``), or
show it inline in JupyterLab::

    import dashboard
    dashboard.show()                      # sample_data
    dashboard.show(data_dir="my/data")    # another directory
"""

from __future__ import annotations

__all__ = ["show"]


def show(data_dir=None, **kw):
    """The dashboard as a Panel layout for JupyterLab (display it, or call ``.servable()``).

    Parameters
    ----------
    data_dir : path, optional
        Directory the file picker lists (default: ``$QUESTS_DATA_DIR`` or ``sample_data``).
    **kw
        ``job_mode`` ("process" or "thread", default "thread" in notebooks) and
        ``max_upload_mb``.

    Returns
    -------
    panel.Row
        The sidebar and the tabs; its ``.app`` attribute is the
        :class:`dashboard.app.DashboardApp` (state and views) for scripting.
    """
    from .app import create_app

    kw.setdefault("job_mode", "thread")
    app = create_app(data_dir, **kw)
    layout = app.layout()
    layout.app = app
    return layout
