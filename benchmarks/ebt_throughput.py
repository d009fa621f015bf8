"""Tokens/s of the Energy-Based Transformer beside a Transformer of equal parameters, training and inference.

    python benchmarks/ebt_throughput.py [--steps 1,2,4,8] [--repeats 5]

The models are `experiments/ebt_lm.py`'s defaults (the EBT: width 64, 2
layers, K = 2 training steps; the Transformer: its width matched to the
EBT's parameter count, attention over the same 64-byte window). Training:
one warm compiled block of 16 steps of 8 x 64 bytes (`engine.compile`, state
donated, the optimizer step included). Inference: a compiled forward over 64
windows of 64 bytes (`contlearn.evaluation.score`), the EBT at each number of
thinking steps (one start), and at K steps from N = 4 starts. The calls are
timed in turn (median of `--repeats`), so all see the same machine load.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from benchmarks import common  # noqa: E402
from contlearn import catalog, engine  # noqa: E402
from contlearn.evaluation import score  # noqa: E402
from contlearn.models import byte_lm  # noqa: E402
from contlearn.models.ebt import ebt_lm as ebt_model  # noqa: E402
from contlearn.stream import Chunk  # noqa: E402

ebt_lm = catalog.load("ebt_lm")  # the experiment beside the imported library, in any checkout

WINDOWS = 64


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", default="1,2,4,8", help="EBT inference steps to time")
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  cfg = ebt_lm.Config(seeds=(0,))
  seq, batch, block = cfg.ebt.seq, cfg.batch, cfg.steps
  rng = np.random.default_rng(0)
  train_block = Chunk(
    rng.integers(0, 256, (block, batch, seq + 1)).astype(np.int32), np.ones((block, batch, seq), bool)
  )
  held = jax.device_put(
    Chunk(rng.integers(0, 256, (1, WINDOWS, seq + 1)).astype(np.int32), np.ones((1, WINDOWS, seq), bool))
  )

  calls, tokens, params = {}, {}, {}
  for name in ("transformer", "ebt"):
    learner = ebt_lm.learner(cfg, name)
    run = engine.compile(learner, learner.init(jax.random.PRNGKey(0)))
    holder = {"state": learner.init(jax.random.PRNGKey(0))}

    def train(run=run, holder=holder):
      holder["state"], metrics = run(holder["state"], train_block)
      return jax.block_until_ready(metrics)

    calls[f"{name} training"], tokens[f"{name} training"] = train, block * batch * seq
    params[name] = learner.init(jax.random.PRNGKey(1)).params  # not the donated training state's

  def inference(model, params):
    forward = jax.jit(lambda p, tokens, mask: score(model, p, tokens, mask).nll.sum())  # no input a constant
    return lambda: jax.block_until_ready(forward(params, held.tokens, held.mask))

  calls["transformer inference"] = inference(byte_lm(ebt_lm.transformer_config(cfg)), params["transformer"])
  think = [int(k) for k in args.steps.split(",")]
  for k in think:
    model = ebt_model(dataclasses.replace(cfg.ebt, infer_steps=k, infer_starts=1), inference=True)
    calls[f"ebt inference, {k} steps"] = inference(model, params["ebt"])
  model = ebt_model(dataclasses.replace(cfg.ebt, infer_steps=cfg.ebt.steps, infer_starts=4), inference=True)
  calls[f"ebt inference, {cfg.ebt.steps} steps, N=4"] = inference(model, params["ebt"])
  for name in calls:
    tokens.setdefault(name, WINDOWS * seq)

  seconds = common.interleaved(calls, args.repeats)
  base = {"training": tokens["transformer training"] / seconds["transformer training"]}
  base["inference"] = tokens["transformer inference"] / seconds["transformer inference"]
  table = []
  for name, s in seconds.items():
    rate = tokens[name] / s
    kind = "training" if "training" in name else "inference"
    table.append({"call": name, "tokens_per_s": rate, "vs_transformer": rate / base[kind]})
  common.print_table(table, ["call", "tokens_per_s", "vs_transformer"])
  per_step = [tokens[f"ebt inference, {k} steps"] / seconds[f"ebt inference, {k} steps"] for k in think]
  common.write_json(
    "ebt_throughput",
    {
      "benchmark": "ebt_throughput",
      "rows": table,
      "ebt_inference_tokens_per_s_by_steps": dict(zip(map(str, think), per_step)),
      "settings": {**vars(args), "seq": seq, "batch": batch, "block": block, "windows": WINDOWS},
    },
  )


if __name__ == "__main__":
  main()
