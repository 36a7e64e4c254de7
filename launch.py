"""Start the QUESTS dashboard.

``python launch.py [--port N] [--address A] [--data-dir DIR] [--no-show]``
"""

import sys

from dashboard.launch import main

if __name__ == "__main__":
    sys.exit(main())
