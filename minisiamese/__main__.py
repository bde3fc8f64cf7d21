"""``python -m minisiamese``: the command line (see minisiamese/cli.py)."""
import sys

from .cli import main

sys.exit(main())
