"""MQAR: recall accuracy against the number of key-value pairs, per memory.

    python experiments/mqar.py            # 10 models x 2 learning rates, ~75 min on 2 idle CPU cores
    python experiments/mqar.py --small    # a smoke run of about a minute

Every model is a 2-layer byte LM of width 64. The memories hold the same
state per layer (2048 floats): matrix memories with 2 heads of 32x32, MLP
memories (TTT-MLP, Titans) with 4 heads of a 16-16-16 MLP, and sliding-window
attention with a 16-token window (16 keys + 16 values of width 64). The
memories' short convolution starts uniform in +-1/sqrt(4) (`mem_conv_init`,
as the reference implementations of Mamba and DeltaNet): MQAR asks each key
to be bound to the token after it, and with the identity start q, k and v see
only their own token until the outer loop learns the shift, which kept every
memory longer on the 1/n plateau (in an earlier version of this experiment,
at 16 pairs after 800 steps, identity -> uniform: linear attention 0.48 ->
0.69, DeltaNet 0.13 -> 0.43). Full
causal attention (a window as long as the sequence) is the reference without
a state limit. Each model trains on sequences of 1..`max_pairs` pairs
(`contlearn.memories.mqar`, pair counts log-uniform by default) at every
learning rate of `lrs` at once (the rates are lanes of one vmapped program,
fed the same batches), with warm-up and cosine decay. The rate with the best
mean accuracy on validation sequences is chosen per model, as in Zoology's
protocol, and scored on fresh test sequences of exactly n pairs. Prints a
table (accuracy on the recalled values) and writes `bench_results/mqar.json`.

Keys come from 64 tokens by default, as many as the two heads' key
dimensions together, so stored pairs barely interfere. `--n-keys 512
--n-values 512` makes keys outnumber them, as in Zoology's MQAR (8192
tokens); that is where the delta rule's correction pays, once its write
strength starts small (`--lr-init 0.05`: DeltaNet's beta from 0.05, not
0.5; docs/memories.md has the runs).
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
from contlearn.models.memory_layer import QK_ACTS  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Run:
  """One row of the table: a label, a mixer and its ModelConfig overrides.

  `window` of "swa": None is the window of equal state, d_model / 4 tokens
  (2 x window x d_model floats, as 2 heads of (d_model / 2)^2); 0 is the
  whole sequence.
  """

  label: str
  mixer: str
  n_heads: int = 2
  decay: str = "none"
  window: int | None = None


@dataclasses.dataclass(frozen=True)
class MqarConfig:
  runs: tuple[Run, ...] = (
      Run("attention (full)", "swa", window=0),
      Run("swa (equal state)", "swa"),
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
  mem_conv_init: str = "uniform"
  mem_qk_act: str = "silu"
  mem_lr_init: float = 0.5
  max_pairs: int = 16
  mix: str = "log_uniform"
  eval_pairs: tuple[int, ...] = (2, 4, 8, 16)
  n_keys: int = 64
  n_values: int = 64
  steps: int = 3000
  batch: int = 32
  lrs: tuple[float, ...] = (3e-3, 1e-2)
  warmup: float = 0.1
  weight_decay: float = 0.1
  clip: float = 1.0
  eval_batch: int = 256
  seed: int = 0


def get_config(small: bool = False) -> MqarConfig:
  cfg = MqarConfig()
  if small:
    runs = tuple(r for r in cfg.runs if r.mixer in ("swa", "deltanet") and r.window is None)
    cfg = dataclasses.replace(cfg, steps=60, max_pairs=4, eval_pairs=(2, 4), eval_batch=64, lrs=(1e-3, 3e-3), runs=runs)
  return cfg


def window(cfg: MqarConfig, run: Run) -> int:
  if run.window is None:
    return cfg.d_model // 4
  return run.window or 4 * cfg.max_pairs


def model_config(cfg: MqarConfig, run: Run) -> ModelConfig:
  return ModelConfig(
      mixer=run.mixer, vocab=mqar.vocab_size(cfg.n_keys, cfg.n_values), d_model=cfg.d_model,
      n_layers=cfg.n_layers, n_heads=run.n_heads, decay=run.decay,
      window=window(cfg, run), mem_chunk=cfg.mem_chunk, mem_conv_init=cfg.mem_conv_init, mem_qk_act=cfg.mem_qk_act,
      mem_lr_init=cfg.mem_lr_init, mem_expansion=1,
  )


def train_and_eval(cfg: MqarConfig, run: Run) -> dict:
  """Trains one model at every rate of `cfg.lrs`; accuracy at each of `eval_pairs`."""
  model = byte_lm(model_config(cfg, run))
  schedule = optax.warmup_cosine_decay_schedule(0.0, 1.0, max(1, int(cfg.warmup * cfg.steps)), cfg.steps)
  # Unit-rate AdamW; each lane scales the update by its own learning rate.
  opt = optax.chain(
      optax.clip_by_global_norm(cfg.clip), optax.scale_by_adam(),
      optax.add_decayed_weights(cfg.weight_decay), optax.scale_by_schedule(schedule),
  )
  lrs = jnp.asarray(cfg.lrs, jnp.float32)
  key = jax.random.PRNGKey(cfg.seed)
  params = jax.vmap(lambda _: model.init_params(key))(lrs)  # the same start in every lane
  opt_state = jax.vmap(opt.init)(params)

  def logits_and_targets(params, batch: mqar.Batch):
    x = batch.tokens[:, :-1]
    logits, _ = model.apply(params, model.init_memory(x.shape[0]), x, jnp.ones(x.shape, bool))
    return logits, batch.tokens[:, 1:]

  def loss_fn(params, batch):
    logits, target = logits_and_targets(params, batch)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, target)
    return jnp.sum(ce * batch.answer) / jnp.maximum(jnp.sum(batch.answer), 1)

  def lane_step(params, opt_state, lr, batch):
    loss, grads = jax.value_and_grad(loss_fn)(params, batch)
    updates, opt_state = opt.update(grads, opt_state, params)
    updates = jax.tree.map(lambda u: -lr * u, updates)
    return optax.apply_updates(params, updates), opt_state, loss

  @jax.jit
  def step(params, opt_state, k):
    k_n, k_b = jax.random.split(k)
    pairs = mqar.pair_counts(k_n, cfg.batch, cfg.max_pairs, cfg.mix)
    batch = mqar.sample(k_b, cfg.batch, pairs, cfg.max_pairs, cfg.n_keys, cfg.n_values)
    return jax.vmap(lane_step, in_axes=(0, 0, 0, None))(params, opt_state, lrs, batch)

  @jax.jit
  def accuracy(params, k, pairs):
    batch = mqar.sample(k, cfg.eval_batch, pairs, cfg.max_pairs, cfg.n_keys, cfg.n_values)

    def lane(p):
      logits, target = logits_and_targets(p, batch)
      hit = (jnp.argmax(logits, axis=-1) == target) & batch.answer
      return jnp.sum(hit) / jnp.sum(batch.answer)

    return jax.vmap(lane)(params)  # [lanes]

  start = time.time()
  losses = []
  for i in range(cfg.steps):
    params, opt_state, loss = step(params, opt_state, jax.random.fold_in(key, i))
    losses.append(loss)
  tail = jnp.mean(jnp.stack(losses[-max(1, cfg.steps // 20):]), axis=0)  # [lanes]
  val = jnp.mean(jnp.stack([accuracy(params, jax.random.PRNGKey(20_000 + n), n) for n in cfg.eval_pairs]), axis=0)
  best = int(jnp.argmax(val))
  test = {n: accuracy(params, jax.random.PRNGKey(10_000 + n), n) for n in cfg.eval_pairs}
  row = {"memory": run.label, "lr": cfg.lrs[best]}
  row.update({f"n={n}": float(acc[best]) for n, acc in test.items()})
  row["loss"] = float(tail[best])
  row["lanes"] = [
      {"lr": lr, "val": float(val[i]), "loss": float(tail[i]), **{f"n={n}": float(acc[i]) for n, acc in test.items()}}
      for i, lr in enumerate(cfg.lrs)
  ]
  row["seconds"] = time.time() - start
  return row


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--small", action="store_true", help="a smoke run of about a minute")
  parser.add_argument("--only", default="", help="comma-separated row labels or mixer names to run")
  parser.add_argument("--steps", type=int, default=0, help="training steps (0: the config's)")
  parser.add_argument("--lrs", default="", help="comma-separated learning rates (default: the config's)")
  parser.add_argument("--mix", default="", choices=["", *mqar.MIXES], help="pair-count distribution in training")
  parser.add_argument("--max-pairs", type=int, default=0, help="most pairs in training (0: the config's); evaluation at the powers of 2 up to it")
  parser.add_argument("--d-model", type=int, default=0, help="model width (0: the config's); states scale as d_model^2")
  parser.add_argument("--n-keys", type=int, default=0, help="size of the key vocabulary (0: the config's)")
  parser.add_argument("--n-values", type=int, default=0, help="size of the value vocabulary (0: the config's)")
  parser.add_argument("--qk-act", default="", choices=["", *QK_ACTS], help="the memories' query/key feature map (model.mem_qk_act; default: the config's)")
  parser.add_argument("--lr-init", type=float, default=0.0, help="initial gated inner rate, e.g. DeltaNet's beta (model.mem_lr_init; 0: the config's)")
  parser.add_argument("--seed", type=int, default=-1, help="initialisation and data seed (-1: the config's)")
  parser.add_argument("--out", default=os.environ.get("CONTLEARN_BENCH_DIR", "bench_results"), help="folder for the JSON")
  parser.add_argument("--resume", action="store_true", help="keep the rows an interrupted run of the same configuration wrote")
  args = parser.parse_args()
  cfg = get_config(args.small)
  changes = {}
  if args.steps:
    changes["steps"] = args.steps
  if args.lrs:
    changes["lrs"] = tuple(float(x) for x in args.lrs.split(","))
  if args.mix:
    changes["mix"] = args.mix
  if args.max_pairs:
    if args.max_pairs < 2:
      parser.error(f"--max-pairs {args.max_pairs}: evaluation needs at least 2 pairs")
    changes["max_pairs"] = args.max_pairs
    changes["eval_pairs"] = tuple(2**i for i in range(1, args.max_pairs.bit_length()))
  if args.d_model:
    changes["d_model"] = args.d_model
  if args.n_keys:
    changes["n_keys"] = args.n_keys
  if args.n_values:
    changes["n_values"] = args.n_values
  if args.qk_act:
    changes["mem_qk_act"] = args.qk_act
  if args.lr_init:
    if not 0.0 < args.lr_init < 1.0:
      parser.error(f"--lr-init {args.lr_init} must lie in (0, 1)")
    changes["mem_lr_init"] = args.lr_init
  if args.seed >= 0:
    changes["seed"] = args.seed
  cfg = dataclasses.replace(cfg, **changes)
  if cfg.n_keys < cfg.max_pairs or cfg.n_values < 1:
    parser.error(f"--n-keys {cfg.n_keys} --n-values {cfg.n_values}: a sequence of {cfg.max_pairs} pairs needs "
                 f"at least {cfg.max_pairs} distinct keys and one value")
  only = [s.strip() for s in args.only.split(",") if s.strip()]
  runs = [r for r in cfg.runs if not only or r.mixer in only or r.label in only]
  # The file is named after the options that change the experiment, so variants sit beside the full run.
  text = lambda v: "-".join(map(str, v)) if isinstance(v, tuple) else str(v)
  tags = (["small"] if args.small else []) + [f"{k}{text(v)}" for k, v in changes.items() if k != "eval_pairs"]
  tags += [r.mixer + (str(window(cfg, r)) if r.mixer == "swa" else "") for r in runs] if only else []
  path = pathlib.Path(args.out) / ("_".join(["mqar", *tags]) + ".json")
  path.parent.mkdir(parents=True, exist_ok=True)
  config = json.loads(json.dumps(dataclasses.asdict(cfg)))
  done = {}
  if args.resume and path.exists():
    saved = json.loads(path.read_text())
    if saved["config"] != config:
      parser.error(f"--resume: {path} holds a run of another configuration")
    done = {r["memory"]: r for r in saved["rows"]}
  rows = []
  for run in runs:
    rows.append(done.get(run.label) or train_and_eval(cfg, run))
    print(json.dumps({k: v for k, v in rows[-1].items() if k != "lanes"}), flush=True)
    # Written after every row, so an interrupted run keeps its finished rows (--resume).
    path.write_text(json.dumps({"config": config, "rows": rows, "seconds": sum(r["seconds"] for r in rows)}, indent=2))
  cols = ["memory", "lr"] + [f"n={n}" for n in cfg.eval_pairs] + ["loss", "seconds"]
  print("| " + " | ".join(cols) + " |")
  print("|" + "---|" * len(cols))
  for r in rows:
    cells = [f"{r[c]:g}" if c == "lr" else f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in cols]
    print("| " + " | ".join(cells) + " |")
  print(f"total {sum(r['seconds'] for r in rows):.0f} s of training and evaluation; written to {path}")


if __name__ == "__main__":
  main()
