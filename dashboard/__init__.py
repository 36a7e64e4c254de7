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
    """The dashboard for a notebook cell (JupyterLab, Jupyter Notebook 7, VS Code).

    Display the returned layout (make it a cell's last expression). This call loads
    Panel's extension with every script and style inline, so the output needs no
    internet and no other call: it can be the first and only dashboard call of a
    notebook. The layout is sized for a cell: files and settings side by side in a
    card above the tabs, the tabs over the cell's width.

    Parameters
    ----------
    data_dir : path, optional
        Directory the file picker lists (default: ``$QUESTS_DATA_DIR`` or ``sample_data``).
    **kw
        ``job_mode`` ("process" or "thread", default "thread" in notebooks) and
        ``max_upload_mb``.

    Returns
    -------
    panel.Column
        The message line, the files-and-settings card and the tabs; its ``.app``
        attribute is the :class:`dashboard.app.DashboardApp` (state and views) for
        scripting.
    """
    from .app import create_app

    kw.setdefault("job_mode", "thread")
    app = create_app(data_dir, notebook=True, **kw)
    layout = app.notebook_layout()
    layout.app = app
    return layout
