"""Operator and demo commands: `python -m saga_log --help`."""

from saga_log.ops.cli import main

main()
