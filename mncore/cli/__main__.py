"""``python -m mncore.cli`` = ``mn``."""

import sys

from . import main

sys.exit(main())
