"""Training throughput of the default byte LMs, and the share of this machine's
matmul rate that their training step reaches.

    python benchmarks/lm_throughput.py [--widths 128,256] [--chunks 5]
    python benchmarks/lm_throughput.py --models transformer --optimizers adam,muon,m3
    python benchmarks/lm_throughput.py --widths 1024 --dtype bfloat16   (an accelerator)

`--models` picks rows of `MODELS` (`mixer_fields`: the mixer's settings
besides its defaults, e.g. the Pallas kernel of Gated DeltaNet); `--optimizers` trains each model with each
named outer optimizer (`contlearn.rules.optimizer_names()`; default adam).
`--dtype` is the models' compute dtype (`model.compute_dtype`; the weights
stay float32) and the dtype of the matmul whose rate the step is compared with.

FLOPs per step come from XLA's cost analysis of one compiled training step
(forward, backward and update); the matmul rate is measured in the same run
(`common.matmul_flops_per_s`). Tokens/s times one warm chunk call: a
`lax.scan` over `steps` steps of `batch x seq` tokens, state donated.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from benchmarks import common  # noqa: E402
from contlearn.config import Config, DataConfig, ModelConfig, TrainConfig  # noqa: E402
from contlearn.engine import compile, place_state, place_xs  # noqa: E402
from contlearn.learner import build_learner  # noqa: E402
from contlearn.mixer_configs import with_known_fields  # noqa: E402
from contlearn.sharding import make_mesh  # noqa: E402
from contlearn.stream import Chunk  # noqa: E402

MODELS = {
  "transformer": dict(mixer="swa"),
  "linear_attention": dict(mixer="linear_attention"),
  "linear_attention_cms": dict(mixer="linear_attention", cms_periods=(1, 16, 256)),
  "gated_deltanet": dict(mixer="gated_deltanet"),
  "gated_deltanet_pallas": dict(mixer="gated_deltanet", mixer_fields=dict(kernel="pallas")),
  "titans": dict(mixer="titans"),
  "titans_pallas": dict(mixer="titans", mixer_fields=dict(kernel="pallas")),
  "hope": dict(mixer="self_modifying_titans", cms_periods=(1, 16, 256)),
  "hope_pallas": dict(mixer="self_modifying_titans", cms_periods=(1, 16, 256), mixer_fields=dict(kernel="pallas")),
  "hope_attention": dict(mixer="swa", cms_periods=(1, 16, 256)),
}
DEFAULT = ("transformer", "linear_attention", "linear_attention_cms")


def config(
  model: dict, width: int, batch: int, seq: int, steps: int, optimizer: str = "adam", dtype: str = "float32"
) -> Config:
  """The byte LM `model` (a row of `MODELS`) at `width` (2 layers, heads of 32), trained by `optimizer` on
  `steps` steps of `batch x seq` tokens."""
  model = dict(model)
  mixer = with_known_fields(model["mixer"], window=seq)  # attention sees the whole step
  mixer = dataclasses.replace(mixer, **model.pop("mixer_fields", {}))
  heads = max(1, width // 32)
  return Config(
    data=DataConfig(batch=batch, seq=seq, steps=steps),
    model=ModelConfig(**{**model, "mixer": mixer}, d_model=width, n_heads=heads, n_layers=2, compute_dtype=dtype),
    train=TrainConfig(optimizer=optimizer),
  )


def prepare(name: str, cfg: Config) -> tuple[Callable[[], Any], dict]:
  """A call running one chunk of `cfg`'s training (state donated, blocking until done), and its row
  without timings: model, optimizer, dtype, width, params, flops_per_step (XLA's cost analysis of one step)."""
  steps, batch, seq = cfg.data.steps, cfg.data.batch, cfg.data.seq
  mesh = make_mesh(devices=jax.local_devices()[:1])
  learner = build_learner(cfg)
  state = place_state(learner.init(jax.random.PRNGKey(0)), mesh)
  rng = np.random.default_rng(0)
  chunk = Chunk(
    tokens=rng.integers(0, 256, (steps, batch, seq + 1)).astype(np.int32),
    mask=np.ones((steps, batch, seq), bool),
  )
  one_step = Chunk(chunk.tokens[0], chunk.mask[0])
  cost = jax.jit(learner.step).lower(state, one_step).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  run = compile(learner, state, mesh=mesh)
  device_chunk = place_xs(chunk, mesh)
  holder = {"state": state}

  def call():
    holder["state"], metrics = run(holder["state"], device_chunk)
    return jax.block_until_ready(metrics)

  row = {
    "model": name,
    "optimizer": cfg.train.optimizer,
    "dtype": cfg.model.compute_dtype,
    "width": cfg.model.d_model,
    "params": int(sum(x.size for x in jax.tree.leaves(state.params))),
    "flops_per_step": float(cost["flops"]),
  }
  return call, row


def rates(row: dict, cfg: Config, seconds: float, matmul: float) -> dict:
  """`row` (from `prepare`) with tokens_per_s, gflops_per_s, flops_per_token and matmul_fraction (of `matmul`,
  FLOP/s) for one chunk call of `seconds`."""
  tokens = cfg.data.steps * cfg.data.batch * cfg.data.seq
  flops_per_s = row["flops_per_step"] * cfg.data.steps / seconds
  return {
    **row,
    "tokens_per_s": tokens / seconds,
    "gflops_per_s": flops_per_s / 1e9,
    "flops_per_token": row["flops_per_step"] / (cfg.data.batch * cfg.data.seq),
    "matmul_fraction": flops_per_s / matmul,
  }


def measure(
  name: str,
  model: dict,
  width: int,
  batch: int,
  seq: int,
  steps: int,
  chunks: int,
  matmul: float,
  optimizer: str = "adam",
  dtype: str = "float32",
) -> dict:
  """`model`'s row at `width`: `prepare` and the median of `chunks` warm chunk calls (`matmul`: FLOP/s)."""
  cfg = config(model, width, batch, seq, steps, optimizer, dtype)
  call, row = prepare(name, cfg)
  return rates(row, cfg, common.time_call(call, repeats=chunks, warmup=1), matmul)


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--widths", default="128,256")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--seq", type=int, default=64)
  parser.add_argument("--steps", type=int, default=32)
  parser.add_argument("--chunks", type=int, default=5)
  parser.add_argument("--models", default=",".join(DEFAULT), help=f"comma-separated, from {', '.join(MODELS)}")
  parser.add_argument("--optimizers", default="adam", help="comma-separated outer optimizer names")
  parser.add_argument("--matmul-size", type=int, default=1024, help="n of the n x n matmul that sets the rate")
  parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"), help="model.compute_dtype")
  args = parser.parse_args()
  names = args.models.split(",")
  unknown = sorted(set(names) - set(MODELS))
  if unknown:
    parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
  matmul = common.matmul_flops_per_s(args.matmul_size, dtype=args.dtype)
  rows = []
  for width in (int(w) for w in args.widths.split(",")):
    for name in names:
      for optimizer in args.optimizers.split(","):
        shape = dict(batch=args.batch, seq=args.seq, steps=args.steps, chunks=args.chunks)
        rows.append(measure(name, MODELS[name], width, **shape, matmul=matmul, optimizer=optimizer, dtype=args.dtype))
  n = args.matmul_size
  print(f"{args.dtype} matmul rate ({n}x{n}, measured): {matmul / 1e9:.1f} GFLOP/s")
  common.print_table(
    rows,
    [
      "model",
      "optimizer",
      "dtype",
      "width",
      "params",
      "tokens_per_s",
      "gflops_per_s",
      "flops_per_token",
      "matmul_fraction",
    ],
  )
  common.write_json("lm_throughput", {"matmul_gflops_per_s": matmul / 1e9, "rows": rows, "settings": vars(args)})


if __name__ == "__main__":
  main()
