"""The ``relu`` family f(x) = Σ_j b_j relu(a_jᵀx) (data sets from :mod:`lin2net.dynamics.vector.data`)."""
