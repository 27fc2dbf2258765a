"""``python -m openbms``: the same command as ``openbms``."""

from openbms.cli import main

main()
