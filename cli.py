#!/usr/bin/env python3
"""The minisiamese command line, run from a checkout: ``python cli.py COMMAND``.

The same program as the installed ``minisiamese`` command and ``python -m
minisiamese`` (the code is minisiamese/cli.py); ``python cli.py --help`` lists
the commands.
"""
import sys

from minisiamese.cli import main

if __name__ == "__main__":
    sys.exit(main())
