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

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import common  # noqa: E402

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


def measure(
  name: str,
  model: dict,
  width: int,
  batch: int,
  seq: int,
  steps: int,
  chunks: int,
  optimizer: str = "adam",
  dtype: str = "float32",
) -> dict:
  heads = max(1, width // 32)
  model = dict(model)
  mixer = with_known_fields(model["mixer"], window=seq)  # attention sees the whole step
  mixer = dataclasses.replace(mixer, **model.pop("mixer_fields", {}))
  cfg = Config(
    data=DataConfig(batch=batch, seq=seq, steps=steps),
    model=ModelConfig(**{**model, "mixer": mixer}, d_model=width, n_heads=heads, n_layers=2, compute_dtype=dtype),
    train=TrainConfig(optimizer=optimizer),
  )
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
  flops_per_step = float(cost["flops"])
  run = compile(learner, state, mesh=mesh)
  device_chunk = place_xs(chunk, mesh)
  holder = {"state": state}

  def call():
    holder["state"], metrics = run(holder["state"], device_chunk)
    return metrics

  seconds = common.time_call(call, repeats=chunks, warmup=1)
  tokens = steps * batch * seq
  return {
    "model": name,
    "optimizer": optimizer,
    "dtype": dtype,
    "width": width,
    "params": int(sum(x.size for x in jax.tree.leaves(holder["state"].params))),
    "tokens_per_s": tokens / seconds,
    "gflops_per_s": flops_per_step * steps / seconds / 1e9,
    "flops_per_token": flops_per_step / (batch * seq),
  }


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
        row = measure(name, MODELS[name], width, args.batch, args.seq, args.steps, args.chunks, optimizer, args.dtype)
        row["matmul_fraction"] = row["gflops_per_s"] * 1e9 / matmul
        rows.append(row)
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
