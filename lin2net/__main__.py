"""``python -m lin2net`` runs the command-line tool."""

from lin2net.cli import main

if __name__ == "__main__":
    main()
