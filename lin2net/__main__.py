"""``python -m lin2net`` and the ``lin2net`` command: run the command-line tool.

This module imports nothing heavy before it can report an interrupt: Ctrl-C
while the tool is still starting (importing NumPy, typer, rich: about half a
second) is one line and exit 130, like Ctrl-C at any later moment, and a
machine without memory enough to start is one line too.
"""

from __future__ import annotations

import sys


def _exit(message: str, code: int) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    sys.exit(code)


def main() -> None:
    try:
        from lin2net.cli import main as run_cli
    except KeyboardInterrupt:
        _exit("interrupted while starting; nothing was written", 130)
        return
    except MemoryError:
        _exit("out of memory while starting (is the memory limit, ulimit -v, too low?)", 1)
        return
    try:
        run_cli()
    except KeyboardInterrupt:  # while typer builds the command line, before any command runs
        _exit("interrupted; nothing was written", 130)


if __name__ == "__main__":
    main()
