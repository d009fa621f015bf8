"""contlearn: functional continual learning in JAX.

A learner is one pytree of arrays (`LearnerState`) advanced by pure update
rules, one compiled `lax.scan` per fixed-shape chunk of an unbounded stream.
"""

from contlearn import models, rules, stream
from contlearn.config import Config, DataConfig, ModelConfig, TrainConfig, apply_overrides
from contlearn.driver import build_learner, run_experiment, train
from contlearn.engine import compile_chunk, data_mesh, scan_chunk
from contlearn.errors import CheckpointError, ConfigError, ContlearnError, DataError
from contlearn.learner import Learner, LearnerState, StepMetrics, sequence_learner
from contlearn.rules import levels, periodic

__all__ = [
    "CheckpointError",
    "Config",
    "ConfigError",
    "ContlearnError",
    "DataConfig",
    "DataError",
    "Learner",
    "LearnerState",
    "ModelConfig",
    "StepMetrics",
    "TrainConfig",
    "apply_overrides",
    "build_learner",
    "compile_chunk",
    "data_mesh",
    "levels",
    "models",
    "periodic",
    "rules",
    "run_experiment",
    "scan_chunk",
    "sequence_learner",
    "stream",
    "train",
]
