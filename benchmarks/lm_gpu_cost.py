"""The expected cost of the accelerator-scale stream and continual-learning configurations on one GPU.

    python benchmarks/lm_gpu_cost.py [--rate 200e12] [--step-us 30]

For every model of nl_lm_comparison_large, ttt_ladder_large and
nl_niah_long, one training step of the model is lowered from shapes alone
(nothing runs, no state is allocated) for a step of one memory chunk per
lane, and XLA's cost analysis gives its FLOPs per token; times the
configuration's training tokens, that is its training FLOPs, and the hours
are at `--rate` FLOP/s sustained (default 200e12, an assumption: about 40%
of an H100's dense TF32 rate, which JAX's default precision gives float32
matrix products on recent NVIDIA GPUs, the configurations' float32 included;
`--set model.compute_dtype=bfloat16` would allow about twice that; the
memories' chunked forms run well below the
rate of large matmuls, so read their hours as a lower bound). XLA counts a
loop's body once: where a form loops over tokens or sub-chunks inside one
chunk, its count is a lower bound too. cl_plasticity_paper is 48M
sequential steps of one image: its FLOPs are negligible and its time is the
number of steps times `--step-us`, an assumed time per step of a compiled
scan on a GPU (default 30 us). cl_three_scenarios_paper's permuted table
is 1.05M steps of a 2x1000 MLP at batch 256: its hours are its FLOPs
(training and scoring, what the strategies add left out) at `--rate`, or
its steps at `--step-us`, whichever is longer. Nothing is timed, so the machine this runs on
does not matter. Prints a table; the last line is a JSON object, also
written to `bench_results/lm_gpu_cost.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from contlearn import catalog  # noqa: E402
from contlearn.config import Config, DataConfig, ModelConfig  # noqa: E402
from contlearn.learner import build_learner  # noqa: E402
from contlearn.mixer_configs import with_known_fields  # noqa: E402
from contlearn.models import byte_lm  # noqa: E402
from contlearn.models.sizing import param_count  # noqa: E402
from contlearn.models.variants import select  # noqa: E402
from contlearn.stream import Chunk  # noqa: E402

STREAMS = ("nl_lm_comparison_large", "ttt_ladder_large")


def chunk_tokens(model: ModelConfig) -> int:
  """Tokens per lane of one step holding one chunk of the model's memory (a whole number of its steps)."""
  chunk = getattr(model.mixer, "chunk", 0) or (16 if model.mixer.name.startswith(("ttt", "self_modifying")) else 64)
  multiple = byte_lm(model).step_multiple
  return chunk * multiple // math.gcd(chunk, multiple)


def flops_per_token(model: ModelConfig, batch: int) -> float:
  """XLA's FLOP count of one training step of `model` (Adam) over `batch` lanes of one chunk, per token."""
  seq = chunk_tokens(model)
  learner = build_learner(Config(data=DataConfig(batch=batch, seq=seq, steps=1), model=model))
  state = jax.eval_shape(learner.init, jax.random.PRNGKey(0))
  step = Chunk(jax.ShapeDtypeStruct((batch, seq + 1), jnp.int32), jax.ShapeDtypeStruct((batch, seq), jnp.bool_))
  cost = jax.jit(learner.step).lower(state, step).cost_analysis()
  return float((cost[0] if isinstance(cost, list) else cost)["flops"]) / (batch * seq)


def row(experiment: str, name: str, model: ModelConfig, batch: int, tokens: int, rate: float) -> dict:
  per_token = flops_per_token(model, batch)
  print(f"{experiment} {name}: {per_token / 1e9:.3g} GFLOP per token", flush=True)
  return {
    "experiment": experiment,
    "model": name,
    "params_m": param_count(model) / 1e6,
    "tokens_b": tokens / 1e9,
    "gflop_per_token": per_token / 1e9,
    "train_pflop": per_token * tokens / 1e15,
    "gpu_hours": per_token * tokens / rate / 3600,
  }


def three_scenarios_row(rate: float, step_us: float) -> dict:
  """cl_three_scenarios_paper's permuted table: every cell's steps, and the MLP's training and scoring FLOPs
  (2 x weights per row forward, 4 backward; 784 inputs, 10 outputs; what the strategies add left out, so a lower
  bound), at `rate` or at `step_us` a step, whichever is slower."""
  exp = catalog.load("cl_three_scenarios_paper")
  cells = exp.cells(exp.get_config()).values()
  widths = [(784, *c.hidden, 10) for c in cells]
  weights = [sum(a * b for a, b in zip(w[:-1], w[1:])) for w in widths]
  steps = sum(c.n_tasks * c.steps_per_task for c in cells)
  train = sum(6 * w * c.batch * len(c.seeds) * c.n_tasks * c.steps_per_task for w, c in zip(weights, cells))
  scored = sum(  # every task's test rows at every evaluation
    2 * w * len(c.seeds) * c.n_tasks * c.max_test * c.n_tasks * c.steps_per_task // c.eval_every
    for w, c in zip(weights, cells)
  )
  first = next(iter(cells))
  return {
    "experiment": "cl_three_scenarios_paper",
    "model": f"MLP {first.hidden}, {len(cells)} cells, {len(first.seeds)} seeds as lanes",
    "params_m": weights[0] / 1e6,
    "steps_m": steps / 1e6,
    "train_pflop": (train + scored) / 1e15,
    "gpu_hours": max((train + scored) / rate, steps * step_us * 1e-6) / 3600,
  }


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rate", type=float, default=200e12, help="sustained FLOP/s assumed")
  parser.add_argument("--step-us", type=float, default=30.0, help="assumed microseconds per batch-1 CL step")
  args = parser.parse_args()
  rows = []
  for experiment in STREAMS:
    for name, cfg in catalog.load(experiment).get_config().items():
      lanes = max(1, len(cfg.train.seeds))
      rows.append(row(experiment, name, cfg.model, cfg.data.batch, lanes * cfg.train.tokens, args.rate))
  ncfg = catalog.load("nl_niah_long").get_config()
  for name, model in select(catalog.load("nl_niah").MODELS, ncfg.models, ncfg.base).items():
    model = dataclasses.replace(model, mixer=with_known_fields(model.mixer, window=ncfg.length))
    tokens = len(ncfg.seeds) * ncfg.steps * ncfg.batch * ncfg.length  # every seed is a lane of the same steps
    rows.append(row("nl_niah_long", name, model, ncfg.batch, tokens, args.rate))
  plasticity = catalog.load("cl_plasticity_paper").get_config().run
  steps = plasticity.n_tasks * plasticity.steps_per_task
  rows.append(
    {
      "experiment": "cl_plasticity_paper",
      "model": f"MLP {plasticity.hidden}, {len(plasticity.seeds)} seeds as lanes",
      "steps_m": steps / 1e6,
      "gpu_hours": 2 * steps * args.step_us * 1e-6 / 3600,  # two methods, one after the other
    }
  )
  rows.append(three_scenarios_row(args.rate, args.step_us))
  columns = ["experiment", "model", "params_m", "tokens_b", "steps_m", "gflop_per_token", "train_pflop", "gpu_hours"]
  common.print_table(rows, columns)
  common.write_json("lm_gpu_cost", {"rate_flops_per_s": args.rate, "step_us": args.step_us, "rows": rows})
  return 0


if __name__ == "__main__":
  sys.exit(main())
