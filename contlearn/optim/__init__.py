"""Optimizers as associative memories (Nested Learning).

Every rule here is an optax `GradientTransformation`, so each works at any
level: as the outer optimizer, wrapped in `contlearn.periodic` as a slow
level, or as the learning rule of an inner memory.
"""

from contlearn.optim.deep_momentum import deep_momentum
from contlearn.optim.dgd import delta_gradient_descent, dgd_token
from contlearn.optim.m3 import m3
from contlearn.optim.momentum import delta_momentum, momentum, preconditioned_momentum
from contlearn.optim.newton_schulz import muon, nonlinear_output, orthogonalize

__all__ = [
  "deep_momentum",
  "delta_gradient_descent",
  "delta_momentum",
  "dgd_token",
  "m3",
  "momentum",
  "muon",
  "nonlinear_output",
  "orthogonalize",
  "preconditioned_momentum",
]
