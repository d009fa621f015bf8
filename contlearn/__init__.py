"""contlearn: functional continual learning in JAX.

A learner is one pytree of arrays (`LearnerState`) advanced by pure update
rules, one compiled `lax.scan` per fixed-shape chunk of an unbounded stream.
"""

# First: it sets XLA_FLAGS, which must happen before any computation.
from contlearn import xla_flags  # noqa: I001, F401
from contlearn import models, rules, stream
from contlearn.config import Config, DataConfig, MeshConfig, ModelConfig, TrainConfig
from contlearn.driver import fit, run_experiment, train
from contlearn.engine import Learner
from contlearn.errors import CheckpointError, ConfigError, ContlearnError, DataError
from contlearn.learner import StepMetrics, build_learner, sequence_learner
from contlearn.overrides import apply_overrides
from contlearn.rules import levels, periodic
from contlearn.sharding import make_mesh
from contlearn.state import LearnerState, new_state

__all__ = [
  "CheckpointError",
  "Config",
  "ConfigError",
  "ContlearnError",
  "DataConfig",
  "DataError",
  "Learner",
  "LearnerState",
  "MeshConfig",
  "ModelConfig",
  "StepMetrics",
  "TrainConfig",
  "apply_overrides",
  "build_learner",
  "fit",
  "levels",
  "make_mesh",
  "models",
  "new_state",
  "periodic",
  "rules",
  "run_experiment",
  "sequence_learner",
  "stream",
  "train",
]
