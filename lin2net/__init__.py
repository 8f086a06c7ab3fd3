"""lin2net: gradient descent on L(a, b) = 1/2 (a·b − Φ)², swept over grids.

See README.md for the command-line tool and docs/math.md for the mathematics.
"""

__version__ = "0.1.0"
