"""A user's flax module (linen or nnx) as a contlearn model or mixer.

contlearn's models are pure functions over plain pytrees (`Model`, `Mixer`);
these adapters wrap a flax module so it trains on the same engine and loop,
with checkpoints, logs and resume, and takes part in update-rule levels like
any built-in model (all its parameters belong to the "outer" level).

    model = from_linen(MyLM(vocab=256))                # tokens [B, T] -> logits [B, T, V]
    model = from_nnx(lambda rngs: MyLM(256, rngs=rngs))
    mixer = mixer_from_linen(MyMixer(d_model), d_model)    # x [B, T, D] -> y [B, T, D]

A wrapped model carries no memory between steps (`init_memory` gives ()):
a module with a state of its own across steps is written as a `Mixer`
(`contlearn.models.mixer`), whose state the learner carries.

>>> import flax.linen as nn, jax, jax.numpy as jnp
>>> class Bigram(nn.Module):
...   @nn.compact
...   def __call__(self, tokens):
...     return nn.Embed(256, 256)(tokens)
>>> model = from_linen(Bigram())
>>> params = model.init_params(jax.random.key(0))
>>> logits, memory = model.apply(params, model.init_memory(2), jnp.zeros((2, 5), jnp.int32), None)
>>> logits.shape, memory
((2, 5, 256), ())
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen, nnx

from contlearn.models.lm import OUTER, Model
from contlearn.models.mixer import Mixer


def _all_outer(params: Any) -> Any:
  return jax.tree.map(lambda _: OUTER, params)


def from_linen(module: linen.Module, *, seq: int = 1) -> Model:
  """A linen module `tokens [B, T] int32 -> logits [B, T, V]` as a `Model`.

  Args:
    module: the module; it is initialised on a `[1, seq]` batch of zeros.
    seq: the length of the initialisation batch (for modules whose parameter
      shapes depend on it, e.g. learned positions).
  """

  def init_params(key):
    return module.init(key, jnp.zeros((1, seq), jnp.int32))["params"]

  def apply(params, memory, tokens, mask):
    del mask
    return module.apply({"params": params}, tokens), memory

  return Model(init_params, lambda batch: (), apply, _all_outer)


def from_nnx(make: Callable[[nnx.Rngs], nnx.Module]) -> Model:
  """An nnx module built by `make(rngs)`, called as `module(tokens) -> logits`, as a `Model`.

  Its parameters travel as a plain nested dict (`nnx.State.to_pure_dict`),
  so they checkpoint and shard like any other pytree.
  """
  graphdef, abstract = nnx.split(nnx.eval_shape(lambda: make(nnx.Rngs(0))))

  def init_params(key):
    return nnx.split(make(nnx.Rngs(key)))[1].to_pure_dict()

  def apply(params, memory, tokens, mask):
    del mask
    state = jax.tree.map(lambda x: x, abstract)  # a fresh State to fill
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(graphdef, state)(tokens), memory

  return Model(init_params, lambda batch: (), apply, _all_outer)


def mixer_from_linen(module: linen.Module, d_model: int) -> Mixer:
  """A linen module `x [B, T, D] -> y [B, T, D]` as a stateless `Mixer`.

  Register it, with the class of its settings, to use it by name
  (`--set model.mixer=my_mixer --set model.mixer.width=8`):

      @dataclasses.dataclass(frozen=True)
      class MyMixerConfig(MixerConfig):
        width: int = 4

      @register_mixer("my_mixer", MyMixerConfig)
      def my_mixer(cfg: MyMixerConfig, model: ModelConfig):
        return mixer_from_linen(MyMixer(model.d_model, cfg.width), model.d_model)
  """

  def init_params(key):
    return module.init(key, jnp.zeros((1, 1, d_model), jnp.float32))["params"]

  def apply(params, state, x, mask):
    del mask
    return module.apply({"params": params}, x), state

  return Mixer(init_params, lambda batch: (), apply)
