"""A user's own model (flax linen and nnx), update rules and stream, through the one loop."""

import dataclasses
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from tiny import tiny_config

import contlearn as cl
from contlearn.checkpoint import Checkpoints
from contlearn.driver import fit
from contlearn.field_checks import require
from contlearn.mixer_configs import MixerConfig
from contlearn.models.flax_models import from_linen, from_nnx, mixer_from_linen
from contlearn.models.mixer import register_mixer
from contlearn.sharding import make_mesh, state_sharding
from contlearn.stream import Chunk


class CountingStream:
  """A user's stream: lane b reads bytes (b + 7 t) % 251 at step t; position = steps read."""

  def __init__(self, steps=2, batch=8, seq=8, total=6):
    self.shape, self.total = (steps, batch, seq), total

  def start(self):
    return 0

  def next(self, position):
    if position >= self.total:
      return None, position
    steps, batch, seq = self.shape
    t = position + np.arange(steps)[:, None, None]
    b = np.arange(batch)[None, :, None]
    i = np.arange(seq + 1)[None, None, :]
    tokens = ((b + 7 * t + 3 * i) % 251).astype(np.int32)
    return Chunk(tokens, np.ones((steps, batch, seq), bool)), position + steps

  def describe(self):
    return "counting stream"


class LinenLM(nn.Module):
  @nn.compact
  def __call__(self, tokens):
    h = nn.Embed(256, 16)(tokens)
    h = h + nn.Dense(16)(nn.gelu(nn.Dense(32)(h)))
    return nn.Dense(256)(h)


class NnxLM(nnx.Module):
  def __init__(self, rngs):
    self.embed = nnx.Embed(256, 16, rngs=rngs)
    self.out = nnx.Linear(16, 256, rngs=rngs)

  def __call__(self, tokens):
    return self.out(self.embed(tokens))


def _rule():
  # A user's optax chain with a second level that steps every 2 steps.
  labels = lambda params: jax.tree_util.tree_map_with_path(  # noqa: E731
    lambda path, _: "slow" if "Dense_2" in jax.tree_util.keystr(path) else "outer", params
  )
  return cl.levels(
    {
      "outer": optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2)),
      "slow": cl.periodic(optax.sgd(0.1), period=2),
    },
    labels,
  )


@pytest.mark.parametrize(
  "make",  # linen in `make test-all`: the two wrappers share everything after the conversion
  [pytest.param(lambda: from_linen(LinenLM()), marks=pytest.mark.slow), lambda: from_nnx(NnxLM)],
  ids=["linen", "nnx"],
)
def test_own_model_rules_and_stream_train_checkpoint_and_resume_exactly(tmp_path, make):
  learner = cl.sequence_learner(make(), _rule(), 8)
  settings = cl.TrainConfig(checkpoint_every=1, keep=5)
  whole = fit(learner, CountingStream(total=8), tmp_path / "whole", settings=settings, progress=False)
  assert whole["tokens"] == 8 * 8 * 8 and np.isfinite(whole["loss"])
  lines = (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()
  assert [json.loads(l)["chunk"] for l in lines] == [1, 2, 3, 4]
  assert json.loads(lines[-1])["loss"] < json.loads(lines[0])["loss"]  # it learns

  # The same run stopped after two chunks, then resumed with a longer budget.
  half = fit(
    learner,
    CountingStream(total=8),
    tmp_path / "split",
    settings=cl.TrainConfig(checkpoint_every=1, keep=5, tokens=2 * 128),
    progress=False,
  )
  assert half["tokens"] == 2 * 128
  again = fit(learner, CountingStream(total=8), tmp_path / "split", settings=settings, resume=True, progress=False)
  assert again["tokens"] == whole["tokens"] and again["loss_all"] == whole["loss_all"]

  def restored(folder):
    abstract = jax.eval_shape(learner.init, jax.random.PRNGKey(0))
    mesh = make_mesh()
    abstract = jax.tree.map(
      lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, state_sharding(abstract, mesh)
    )
    ckpt = Checkpoints(folder / "checkpoints")
    state, _, _ = ckpt.restore(abstract)
    ckpt.close()
    return state

  a, b = restored(tmp_path / "whole"), restored(tmp_path / "split")
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_the_slow_level_of_a_users_chain_steps_every_second_step():
  model = from_linen(LinenLM())
  learner = cl.sequence_learner(model, _rule(), 8)
  state = learner.init(jax.random.PRNGKey(0))
  chunk, _ = CountingStream(steps=3).next(0)
  slow = lambda s: s.params["Dense_2"]["kernel"]  # noqa: E731
  history = [slow(state)]
  for t in range(3):
    state, _ = learner.step(state, jax.tree.map(lambda a: a[t], chunk))
    history.append(slow(state))
  moved = [not np.array_equal(history[i], history[i + 1]) for i in range(3)]
  assert moved == [False, True, False]


class DoubleTokenMix(nn.Module):
  """A user's mixer: the previous token's features, through a dense layer."""

  d: int

  @nn.compact
  def __call__(self, x):
    shifted = jnp.pad(x, ((0, 0), (1, 0), (0, 0)))[:, :-1]
    return nn.Dense(self.d)(shifted)


@dataclasses.dataclass(frozen=True)
class ShiftConfig(MixerConfig):
  """A user's mixer's own settings.

  Attributes:
    features: output features of the dense layer (the model's width if 0).
  """

  features: int = 0

  def __post_init__(self):
    super().__post_init__()
    require(self, non_negative=("features",))


@register_mixer("test_linen_shift", ShiftConfig)
def _shift_mixer(cfg: ShiftConfig, model: cl.ModelConfig):
  return mixer_from_linen(DoubleTokenMix(cfg.features or model.d_model), model.d_model)


def test_a_registered_linen_mixer_runs_in_the_byte_lm_by_name(tmp_path):
  cfg = cl.apply_overrides(tiny_config(), ["model.mixer=test_linen_shift", "model.mixer.features=32"])
  assert cfg.model.mixer == ShiftConfig(features=32)
  with pytest.raises(cl.ConfigError, match=r"--set model.mixer.features=-1: must be an integer >= 0"):
    cl.apply_overrides(cfg, ["model.mixer.features=-1"])
  summary = cl.train(cl.apply_overrides(cfg, ["train.tokens=1024"]), tmp_path, progress=False)
  assert summary["mixer"] == "test_linen_shift" and np.isfinite(summary["loss"])
