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

Each mixer registers, with its name, the frozen dataclass of its own settings
(a `MixerConfig`); `ModelConfig.mixer` holds an instance, and the factory
gets it with the model's shared sizes:

    @dataclasses.dataclass(frozen=True)
    class MyMixerConfig(MixerConfig):
      '''My mixer.

      Attributes:
        width: tokens each position mixes (>= 1).
      '''

      width: int = 4

      def __post_init__(self):
        super().__post_init__()
        require(self, positive=("width",))

    @register_mixer("my_mixer", MyMixerConfig)
    def my_mixer(cfg: MyMixerConfig, model: ModelConfig) -> Mixer: ...

Then `--set model.mixer=my_mixer --set model.mixer.width=8` builds it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from contlearn.config import ModelConfig
from contlearn.errors import ConfigError
from contlearn.mixer_configs import MixerConfig, mixer_config_class, register_mixer_config

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


class Registered(NamedTuple):
  """A registered mixer: `factory(cfg, model) -> Mixer` and the class of its settings."""

  factory: Callable[[Any, ModelConfig], Mixer]
  config: type[MixerConfig]


_FACTORIES: dict[str, Callable[[Any, ModelConfig], Mixer]] = {}


def register_mixer(name: str, config: type[MixerConfig]):
  """Decorator: registers `factory(cfg: config, model: ModelConfig) -> Mixer` under `name`.

  `config` is the frozen dataclass of the mixer's own settings, a
  `MixerConfig` subclass no other mixer registered (a subclass with no new
  fields gives a mixer the fields of another), registered with
  `contlearn.mixer_configs.register_mixer_config`; the factory reads its settings
  from `cfg` and the model's sizes (d_model, n_heads, n_layers) from `model`.
  """
  register_mixer_config(name, config)

  def wrap(factory):
    _FACTORIES[name] = factory
    return factory

  return wrap


def registered(name: str) -> Registered:
  """The mixer registered as `name`, or a ConfigError naming the choices."""
  config = mixer_config_class(name)
  if name not in _FACTORIES:
    raise ConfigError(f"model.mixer={name!r}: its settings are registered but not its factory")
  return Registered(_FACTORIES[name], config)


def head_width(model: ModelConfig) -> int:
  """The head width `d_model / n_heads`, or a ConfigError."""
  d, h = model.d_model, model.n_heads
  if d % h:
    raise ConfigError(f"model.d_model={d} must be divisible by model.n_heads={h}")
  return d // h


def build_mixer(model: ModelConfig) -> Mixer:
  """The mixer of `model.mixer`, at the model's sizes."""
  return registered(model.mixer.name).factory(model.mixer, model)
