"""Our own code uses no deprecated API of its dependencies (so their next major release
does not break the app): importing the packages raises none, and building every tab
of the dashboard warns from no line of ours."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OURS = (str(ROOT / "dashboard"), str(ROOT / "quests_core"))
CATEGORIES = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)


def test_importing_the_packages_raises_no_deprecation():
    flags = [f"-W error::{c.__name__}" for c in CATEGORIES]
    code = "import quests_core, quests_core.cli, dashboard, dashboard.app"
    run = subprocess.run([sys.executable, *" ".join(flags).split(), "-c", code],
                         capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]


def test_building_every_tab_warns_from_no_line_of_ours():
    from dashboard.app import TAB_NAMES, create_app

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        app = create_app()
        for index in range(len(TAB_NAMES)):
            app.build_tab(index)
        app.template()
        app.layout()
        app.cleanup()
    ours = [f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in caught
            if issubclass(w.category, CATEGORIES) and w.filename.startswith(OURS)]
    assert not ours, "\n".join(ours)
