"""MQAR: recall accuracy against the number of key-value pairs, per memory.

    python experiments/mqar.py            # all 9 memories, ~30 min on 2 CPU cores
    python experiments/mqar.py --small    # a 2-minute smoke run

Every memory is a 2-layer byte LM of width 64 whose mixer holds the same
state per layer (2048 floats): matrix memories with 2 heads of 32x32, MLP
memories (TTT-MLP, Titans) with 4 heads of a 16-16-16 MLP, and sliding-window
attention with a 16-token window (16 keys + 16 values of width 64). Each model
trains on sequences of 1..`max_pairs` pairs (`contlearn.memories.mqar`), then
is scored on fresh sequences of exactly n pairs. Prints a table (accuracy on
the recalled values) and writes `bench_results/mqar.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from contlearn.config import ModelConfig  # noqa: E402
from contlearn.memories import mqar  # noqa: E402
from contlearn.models import byte_lm  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Run:
  """One row of the table: a label, a mixer and its ModelConfig overrides."""

  label: str
  mixer: str
  n_heads: int = 2
  decay: str = "none"
  window: int = 16


@dataclasses.dataclass(frozen=True)
class MqarConfig:
  runs: tuple[Run, ...] = (
      Run("swa (window 16)", "swa"),
      Run("linear attention", "linear_attention"),
      Run("retnet decay", "linear_attention", decay="multiscale"),
      Run("mamba2 decay", "mamba2"),
      Run("deltanet", "deltanet"),
      Run("gated deltanet", "gated_deltanet"),
      Run("ttt-linear", "ttt_linear"),
      Run("ttt-mlp", "ttt_mlp", n_heads=4),
      Run("titans", "titans", n_heads=4),
  )
  d_model: int = 64
  n_layers: int = 2
  mem_chunk: int = 16
  max_pairs: int = 16
  eval_pairs: tuple[int, ...] = (2, 4, 8, 16)
  n_keys: int = 64
  n_values: int = 64
  steps: int = 800
  batch: int = 32
  lr: float = 3e-3
  eval_batch: int = 256
  seed: int = 0


def get_config(small: bool = False) -> MqarConfig:
  cfg = MqarConfig()
  if small:
    cfg = dataclasses.replace(cfg, steps=100, max_pairs=8, eval_pairs=(2, 4, 8), eval_batch=64, runs=cfg.runs[:5:2])
  return cfg


def model_config(cfg: MqarConfig, run: Run) -> ModelConfig:
  return ModelConfig(
      mixer=run.mixer, vocab=mqar.vocab_size(cfg.n_keys, cfg.n_values), d_model=cfg.d_model,
      n_layers=cfg.n_layers, n_heads=run.n_heads, decay=run.decay, window=run.window,
      mem_chunk=cfg.mem_chunk, mem_expansion=1,
  )


def train_and_eval(cfg: MqarConfig, run: Run) -> dict:
  """Trains one model on mixed pair counts; accuracy at each of `eval_pairs`."""
  model = byte_lm(model_config(cfg, run))
  opt = optax.adamw(cfg.lr, weight_decay=0.01)
  key = jax.random.PRNGKey(cfg.seed)
  params = model.init_params(key)
  opt_state = opt.init(params)

  def scores(params, batch: mqar.Batch):
    x = batch.tokens[:, :-1]
    logits, _ = model.apply(params, model.init_memory(x.shape[0]), x, jnp.ones(x.shape, bool))
    return logits, batch.tokens[:, 1:]

  def loss_fn(params, batch):
    logits, target = scores(params, batch)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, target)
    return jnp.sum(ce * batch.answer) / jnp.maximum(jnp.sum(batch.answer), 1)

  @jax.jit
  def step(params, opt_state, k):
    k_n, k_b = jax.random.split(k)
    pairs = jax.random.randint(k_n, (cfg.batch,), 1, cfg.max_pairs + 1)
    batch = mqar.sample(k_b, cfg.batch, pairs, cfg.max_pairs, cfg.n_keys, cfg.n_values)
    loss, grads = jax.value_and_grad(loss_fn)(params, batch)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  @jax.jit
  def accuracy(params, k, pairs):
    batch = mqar.sample(k, cfg.eval_batch, pairs, cfg.max_pairs, cfg.n_keys, cfg.n_values)
    logits, target = scores(params, batch)
    hit = (jnp.argmax(logits, axis=-1) == target) & batch.answer
    return jnp.sum(hit) / jnp.sum(batch.answer)

  start = time.time()
  for i in range(cfg.steps):
    params, opt_state, loss = step(params, opt_state, jax.random.fold_in(key, i))
  row = {"memory": run.label, "loss": float(loss)}
  for n in cfg.eval_pairs:
    row[f"n={n}"] = float(accuracy(params, jax.random.PRNGKey(10_000 + n), n))
  row["seconds"] = time.time() - start
  return row


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--small", action="store_true", help="a 2-minute smoke run")
  parser.add_argument("--only", default="", help="comma-separated mixer names to run")
  parser.add_argument("--steps", type=int, default=0, help="training steps (0: the config's)")
  args = parser.parse_args()
  cfg = get_config(args.small)
  if args.steps:
    cfg = dataclasses.replace(cfg, steps=args.steps)
  runs = [r for r in cfg.runs if not args.only or r.mixer in args.only.split(",")]
  rows = []
  for run in runs:
    rows.append(train_and_eval(cfg, run))
    print(json.dumps(rows[-1]), flush=True)
  cols = ["memory"] + [f"n={n}" for n in cfg.eval_pairs] + ["loss", "seconds"]
  print("| " + " | ".join(cols) + " |")
  print("|" + "---|" * len(cols))
  for r in rows:
    print("| " + " | ".join(f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
  out = pathlib.Path(os.environ.get("CONTLEARN_BENCH_DIR", "bench_results"))
  out.mkdir(parents=True, exist_ok=True)
  name = "mqar" + (f"_{args.only.replace(',', '_')}" if args.only else "") + (f"_{cfg.steps}" if args.steps else "")
  (out / f"{name}.json").write_text(json.dumps({"config": dataclasses.asdict(cfg), "rows": rows}, indent=2))


if __name__ == "__main__":
  main()
