"""Tokens/s of every memory mixer, and its fraction of the machine's matmul rate.

    python benchmarks/memories_throughput.py [--widths 256,512] [--batch 2] [--seq 1024]

For each memory and width D (heads of 64), one jitted forward+backward of the
mixer (gradients of the summed output w.r.t. all parameters) on a batch of
`batch x seq` tokens. "util" is the matmul FLOP rate achieved (matmul FLOPs
counted from the jaxpr, scans times their length) over the measured float32
matmul rate of this machine (`common.matmul_flops_per_s`). Prints a table;
the last line is JSON (also `bench_results/memories_throughput.json`).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from contlearn.config import ModelConfig  # noqa: E402
from contlearn.mixer_configs import with_known_fields  # noqa: E402
from contlearn.models import build_mixer  # noqa: E402

MEMORIES = ["linear_attention", "mamba2", "deltanet", "gated_deltanet", "ttt_linear", "ttt_mlp", "titans", "swa"]


def matmul_flops(jaxpr) -> float:
  """FLOPs of the dot products in a closed jaxpr, scan bodies times their length."""
  total = 0.0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == "dot_general":
      (lc, _), (lb, _) = eqn.params["dimension_numbers"]
      a = eqn.invars[0].aval.shape
      out = eqn.outvars[0].aval.shape
      total += 2.0 * math.prod(out) * math.prod(a[i] for i in lc)
    for sub in _subjaxprs(eqn):
      reps = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
      total += reps * matmul_flops(sub)
  return total


def _subjaxprs(eqn):
  """The jaxprs nested in an equation (scan, jit, custom derivatives)."""
  for value in eqn.params.values():
    for v in value if isinstance(value, (tuple, list)) else (value,):
      if hasattr(v, "eqns"):
        yield v
      elif hasattr(v, "jaxpr") and hasattr(v.jaxpr, "eqns"):
        yield v.jaxpr


def measure(name: str, width: int, batch: int, seq: int, repeats: int) -> dict:
  cfg = ModelConfig(mixer=with_known_fields(name, window=128), d_model=width, n_heads=width // 64, n_layers=1)
  mixer = build_mixer(cfg)
  params = mixer.init_params(jax.random.PRNGKey(0))
  x = jax.random.normal(jax.random.PRNGKey(1), (batch, seq, width), jnp.float32)
  mask = jnp.ones((batch, seq), bool)
  state = mixer.init_state(batch)
  grad = jax.grad(lambda p, state, x, mask: jnp.sum(mixer.apply(p, state, x, mask)[0]))
  flops = matmul_flops(jax.make_jaxpr(grad)(params, state, x, mask).jaxpr)
  step = jax.jit(grad)  # the inputs as arguments: XLA folds no part of the step into constants
  seconds = common.time_call(lambda: step(params, state, x, mask), repeats=repeats)
  return {
    "memory": name,
    "width": width,
    "tokens_per_s": batch * seq / seconds,
    "gflop": flops / 1e9,
    "gflop_per_s": flops / seconds / 1e9,
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--widths", default="256,512")
  parser.add_argument("--batch", type=int, default=2)
  parser.add_argument("--seq", type=int, default=1024)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--only", default="", help="comma-separated memories")
  args = parser.parse_args()
  rate = common.matmul_flops_per_s()
  names = args.only.split(",") if args.only else MEMORIES
  rows = []
  for width in (int(w) for w in args.widths.split(",")):
    for name in names:
      row = measure(name, width, args.batch, args.seq, args.repeats)
      row["util"] = row["gflop_per_s"] * 1e9 / rate
      rows.append(row)
      print(row, flush=True)
  print(f"forward+backward, batch {args.batch} x {args.seq}, heads of 64; matmul rate {rate / 1e9:.1f} GFLOP/s")
  common.print_table(rows, ["memory", "width", "tokens_per_s", "gflop", "gflop_per_s", "util"])
  common.write_json(
    "memories_throughput", {"matmul_flops_per_s": rate, "batch": args.batch, "seq": args.seq, "rows": rows}
  )


if __name__ == "__main__":
  main()
