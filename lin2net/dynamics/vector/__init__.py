"""The ``vector`` family f(x) = bᵀAx and the vector data sets it shares with ``relu``."""
