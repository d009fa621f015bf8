"""The sequence-mixer protocol and its registry.

A mixer is the token-mixing part of a block: attention, a linear-attention
memory, a TTT layer. It is three pure functions. Its state (a key/value cache,
a memory matrix) is carried from one step of the stream to the next, so a
memory's context is the whole stream; every leaf of the state has the batch
(lane) as its leading axis, which is how the state is sharded over devices.

    params = mixer.init_params(key)
    state = mixer.init_state(batch)
    y, state = mixer.apply(params, state, x, mask)   # x, y: [B, T, D]; mask: [B, T]

`mask[b, t]` is False for padding at the ragged end of a finite stream: a
masked token must not change the state.

A mixer whose state carries the stream exactly only across calls of whole
blocks of tokens (TTT's and Titans' inner mini-batches, MAC's segments, which
are counted from the start of each call) says so in `step_multiple`; the
driver refuses a `data.seq` that is not a multiple of it.

Mixers are built by name from the `ModelConfig`:

    @register_mixer("my_mixer")
    def my_mixer(cfg: ModelConfig) -> Mixer: ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from contlearn.config import ModelConfig
from contlearn.errors import ConfigError

Params = Any
State = Any


class Mixer(NamedTuple):
  """A sequence block as pure functions (see the module docstring).

  step_multiple: tokens per call must be a multiple of this for consecutive
    calls to equal one call over the whole stream (1: any length).
  step_reason: what sets `step_multiple`, naming the config fields.
  """

  init_params: Callable[[jax.Array], Params]
  init_state: Callable[[int], State]
  apply: Callable[[Params, State, jax.Array, jax.Array], tuple[jax.Array, State]]
  step_multiple: int = 1
  step_reason: str = ""


_MIXERS: dict[str, Callable[[ModelConfig], Mixer]] = {}


def register_mixer(name: str):
  """Decorator: registers `factory(cfg: ModelConfig) -> Mixer` under `name`."""

  def wrap(factory):
    if name in _MIXERS:
      raise ValueError(f"mixer {name!r} is registered twice")
    _MIXERS[name] = factory
    return factory

  return wrap


def mixer_names() -> list[str]:
  return sorted(_MIXERS)


def build_mixer(cfg: ModelConfig) -> Mixer:
  """The mixer named by `cfg.mixer`, or a ConfigError naming the choices."""
  if cfg.mixer not in _MIXERS:
    raise ConfigError(f"model.mixer={cfg.mixer!r} is not a known mixer; choose one of {', '.join(mixer_names())}")
  return _MIXERS[cfg.mixer](cfg)
