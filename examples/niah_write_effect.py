"""How much a memory's writes move the needle task's loss at initialisation.

For each model of nl_niah (`MODELS`), a freshly initialised byte LM reads a
batch of single-needle sequences of the training length (the curriculum's
first step: the needle next to its question) twice: with its memory writing
at the default inner rate, and with the rate near zero (Hope: `lr_scale`
1e-6; Titans and the gated memories: `lr_init` 1e-6), so the reads see
almost nothing written. The difference of the mean loss (nats per byte, all
bytes) is what the writes contribute before any training, per
initialisation seed. A model whose reads barely see their writes gives the
outer loop little gradient through them.

    python examples/niah_write_effect.py
    python examples/niah_write_effect.py --models hope --set hope.step_norm=false --set hope.lr_scale=32

`--set LABEL.FIELD=VALUE` sets a field of that model's mixer (both reads use
it). Prints one line per model and the JSON of every value.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from contlearn import catalog
from contlearn.config import ModelConfig
from contlearn.errors import ConfigError
from contlearn.evaluation import score, segments
from contlearn.models import byte_lm
from contlearn.stream import niah

NIAH = catalog.load(str(pathlib.Path(__file__).resolve().parents[1] / "experiments" / "nl_niah.py"))
RATE_FIELDS = ("lr_scale", "lr_init")  # the inner rate's scale (Hope) or its gate's initial value
NEAR_ZERO = 1e-6


def without_writes(mcfg: ModelConfig) -> ModelConfig:
  """`mcfg` with its memory's inner rate near zero; ConfigError for a mixer without one (attention)."""
  for name in RATE_FIELDS:
    if hasattr(mcfg.mixer, name):
      return dataclasses.replace(mcfg, mixer=dataclasses.replace(mcfg.mixer, **{name: NEAR_ZERO}))
  raise ConfigError(f"mixer {mcfg.mixer.name!r} has no inner rate ({' or '.join(RATE_FIELDS)}) to set near zero")


def mean_losses(mcfg: ModelConfig, steps: jax.Array, seeds: list[int]) -> np.ndarray:
  """Mean loss (nats per byte) of `steps` [segments, B, L] under each seed's initial parameters: [seeds] float64."""
  model = byte_lm(mcfg)
  mask = jnp.ones(steps[:, :, 1:].shape, bool)
  losses = [score(model, model.init_params(jax.random.PRNGKey(s)), steps, mask).nll.mean() for s in seeds]
  return np.asarray(losses, np.float64)


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  NIAH.add_model_options(parser, "titans,gated_deltanet,hope")
  parser.add_argument("--batch", type=int, default=8, help="needle sequences read")
  parser.add_argument("--length", type=int, default=NIAH.NiahConfig.length, help="bytes per sequence")
  args = parser.parse_args(argv)
  models, seeds = NIAH.chosen_models(args, NIAH.NiahConfig.base)
  hay, _ = NIAH.haystacks()
  batch = niah.sample(np.random.default_rng(0), hay, args.batch, args.length, 0, NIAH.NiahConfig.digits, 0.0)
  steps = segments(batch.tokens, args.length)
  result = {}
  for label, mcfg in models.items():
    writing, silent = mean_losses(mcfg, steps, seeds), mean_losses(without_writes(mcfg), steps, seeds)
    effect = writing - silent
    result[label] = {"writing": writing.tolist(), "rate_near_zero": silent.tolist(), "effect": effect.tolist()}
    print(f"{label}: the writes move the loss by {', '.join(f'{e:+.4f}' for e in effect)} nats (seeds {args.seeds})")
  print(json.dumps({"seeds": seeds, "batch": args.batch, "length": args.length, "models": result}))
  return result


if __name__ == "__main__":
  main()
