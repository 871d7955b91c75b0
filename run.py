#!/usr/bin/env python3
"""StepForge's command line in a checkout: the same as the installed `stepforge` command (`commands.cli`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from commands.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
