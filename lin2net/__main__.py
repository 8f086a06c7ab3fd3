"""``python -m lin2net`` runs the command-line tool."""

from lin2net.cli import main

main()
