"""`python -m core.cli`: the `jobyard` command without its entry point script."""

from core.cli import main

main()
