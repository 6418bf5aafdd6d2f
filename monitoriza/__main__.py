"""``python -m monitoriza``: the command line, for child processes of ``monitoriza up``."""

import sys

from monitoriza.cli import main

sys.exit(main())
