"""The ``deep`` model family: f = W_N ⋯ W_1, L = ½(f − Φ)² (see :mod:`lin2net.dynamics.deep.model`)."""

from lin2net.dynamics.deep.model import DeepModel, flatten, layers

__all__ = ["DeepModel", "flatten", "layers"]
