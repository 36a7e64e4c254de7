"""``python -m quests_core.cli``: the ``quests-dashboard`` command line."""

import sys

from quests_core.cli import main

sys.exit(main())
