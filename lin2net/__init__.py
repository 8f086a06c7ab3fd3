"""lin2net: gradient descent on L(a, b) = 1/2 (a·b − Φ)², swept over grids.

See README.md for the command-line tool, docs/python.md for the Python API
(:func:`run`, :func:`open`, :func:`trace`) and docs/math.md for the mathematics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Output", "__version__", "open", "run", "trace"]

if TYPE_CHECKING:
    from lin2net.api import Output, open, run, trace


def __getattr__(name: str) -> Any:
    """The API names, imported on first use (``import lin2net`` stays light for the CLI)."""
    if name in ("Output", "open", "run", "trace"):
        from lin2net import api

        return getattr(api, name)
    raise AttributeError(f"module 'lin2net' has no attribute {name!r}")
