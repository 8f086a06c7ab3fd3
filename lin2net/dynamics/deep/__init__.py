"""The ``deep`` model family: f = W_N ⋯ W_1, L = ½(f − Φ)² (see :mod:`lin2net.dynamics.deep.model`)."""

from lin2net.dynamics.deep.model import DeepModel, explicit_shape, explicit_theta, flatten, layers

__all__ = ["DeepModel", "explicit_shape", "explicit_theta", "flatten", "layers"]
