"""``python -m regcopy`` runs the command line."""

from regcopy.cli import main

main()
