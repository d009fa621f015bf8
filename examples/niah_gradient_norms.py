"""Where the outer gradient of the needle task sits at initialisation, by parameter group.

For each model of nl_niah (`MODELS`), each initialisation seed's parameters
(drawn as the experiment's lanes draw them: `engine.seed_keys`, then the
learner's `init`) take the gradient of the training loss (the answer
digits' cross-entropy) on the batches of the experiment's first training
steps (`--batches`, the curriculum's start), without clipping. Prints,
per seed, the gradient's global norm (mean over the batches) and the
share of its square in each group: Hope's initial memories `M_0` by name
(k, v, eta, alpha, [momentum], mem: their weights, biases and LayerNorms
over both layers), and everything else ("rest"). By default nl_niah
clips the gradient to a global norm of 1 before AdamW (its `clip`), so a
group that holds nearly all of a norm far above 1 leaves the others a
small fraction of their gradient. Attention's window is the training
length, as in training.

    python examples/niah_gradient_norms.py --models hope_plain
    python examples/niah_gradient_norms.py --models hope_plain --set hope_plain.self_values=true

`--set LABEL.FIELD=VALUE` sets a field of that model's mixer. Prints one
line per model and seed, then the JSON of every value.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

from contlearn import catalog, engine
from contlearn.learner import Sequences, sequence_learner, sequence_task_model
from contlearn.models import byte_lm
from contlearn.models.hope import SelfModifyingTitansConfig
from contlearn.models.hope import spec as hope_spec

NIAH = catalog.load(str(pathlib.Path(__file__).resolve().parents[1] / "experiments" / "nl_niah.py"))


def group_squares(grads, memories: tuple[str, ...]) -> dict[str, float]:
  """Squared norm of `grads` by group: each initial memory of a self-modifying mixer (its `sm` leaves other than
  the per-head rate biases and `wq`, whose axis 1 runs over `memories`), and "rest"."""
  groups = dict.fromkeys((*memories, "rest"), 0.0)
  for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
    keys = [getattr(p, "key", None) for p in path]
    g = np.asarray(g, np.float64)
    if "sm" in keys and ("w0" in keys or "ln" in keys):  # [heads, memories, ...]
      for i, name in enumerate(memories):
        groups[name] += float(np.sum(np.square(g[:, i])))
    else:
      groups["rest"] += float(np.sum(np.square(g)))
  return groups


def loss_gradient(model):
  """The jitted gradient of `model`'s training loss (scored targets' mean cross-entropy) on one batch's
  `(params, tokens [B, T+1], mask [B, T], scored [B, T])`."""
  loss = sequence_task_model(model).loss
  return jax.jit(jax.grad(lambda params, tokens, mask, scored: loss(params, Sequences(tokens, mask, None, scored))[0]))


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  NIAH.add_model_options(parser, "titans,hope,hope_plain")
  parser.add_argument("--batches", type=int, default=4, help="the first training steps' batches")
  args = parser.parse_args(argv)
  cfg = NIAH.resolved(NIAH.get_config())
  models, seeds = NIAH.chosen_models(args, cfg.base, window=cfg.length)
  hay, _ = NIAH.haystacks()
  chunk = NIAH.training_block(cfg, hay, 0, args.batches)  # [batches, B, ...]
  result = {}
  for label, mcfg in models.items():
    model = byte_lm(mcfg)
    grad = loss_gradient(model)
    learner = sequence_learner(model, optax.identity(), cfg.batch, carry_memory=False)
    memories = hope_spec(mcfg.mixer, mcfg).names if isinstance(mcfg.mixer, SelfModifyingTitansConfig) else ()
    rows = []
    for seed, key in zip(seeds, engine.seed_keys(seeds)):
      params = learner.init(key).params
      squares = [
        group_squares(grad(params, *(jnp.asarray(a[b]) for a in chunk)), memories) for b in range(args.batches)
      ]
      norm = float(np.mean([np.sqrt(sum(s.values())) for s in squares]))
      share = {k: float(np.mean([s[k] / max(sum(s.values()), 1e-300) for s in squares])) for k in squares[0]}
      rows.append({"seed": seed, "grad_norm": norm, "share": share})
      parts = ", ".join(f"{k} {v:.3f}" for k, v in share.items())
      print(f"{label} seed {seed}: gradient norm {norm:.4g}; share of its square: {parts}", flush=True)
    result[label] = rows
  print(json.dumps({"seeds": seeds, "batches": args.batches, "models": result}))
  return result


if __name__ == "__main__":
  main()
