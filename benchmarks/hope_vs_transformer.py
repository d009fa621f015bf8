"""Hope's training step against the Transformer's, at equal width and at equal parameter count.

    python benchmarks/hope_vs_transformer.py [--widths 256,512] [--steps 4] [--repeats 3]

At each width, three byte LMs of `lm_throughput.py` (2 layers, 8 lanes x 64
tokens a step, Adam): Hope (`self_modifying_titans` with the CMS of periods
1/16/256, heads of 32), the Transformer at the same width and heads, and the
Transformer at the width whose parameter count is closest to Hope's
(`sizing.matched_width`, Hope's number of heads). Each is one warm chunk call
of `--steps` steps. The float32 matmul rate is one more call, 8 chained
1024 x 1024 products (`common.matmul_chain`). The calls are timed in turn
(median of `--repeats`), so all see the same load.

Per width, two ratios with goals (`GOALS`) and one without:

    ratio_matmul_fraction_w{W}  Hope's FLOP rate (XLA's cost analysis of one step, as
                                `lm_throughput.py`) over the matmul rate; goal 0.40
    ratio_equal_params_w{W}     Hope's tokens/s over the Transformer's at Hope's parameter
                                count; goal 0.25
    ratio_equal_width_w{W}      Hope's tokens/s over the Transformer's at width W

XLA's cost analysis counts a loop's body once, so the first ratio undercounts
Hope's main memory (a scan over 16-token chunks); `hope_profile.py` counts its
products with every step. Prints a table; the last line is a JSON object with
the rows, the ratios and their goals (also `bench_results/hope_vs_transformer.json`).
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from benchmarks import common, lm_throughput  # noqa: E402
from contlearn.models.sizing import matched_width, param_count  # noqa: E402

GOALS = {"matmul_fraction": 0.40, "equal_params": 0.25}  # per width: ratio_<name>_w<width>


def models_at(width: int, batch: int, seq: int, steps: int) -> dict[str, object]:
  """Hope, the Transformer at `width`, and the Transformer at Hope's parameter count: name -> `Config`."""
  hope = lm_throughput.config(lm_throughput.MODELS["hope"], width, batch, seq, steps)
  same = lm_throughput.config(lm_throughput.MODELS["transformer"], width, batch, seq, steps)
  matched = matched_width(same.model, param_count(hope.model), hi=4 * width)
  return {
    "hope": hope,
    "transformer": same,
    "transformer_equal_params": dataclasses.replace(same, model=matched),
  }


def ratios(rows: list[dict]) -> tuple[dict, dict]:
  """The ratios of the module docstring from `rows` (one per model and width, from `lm_throughput.rates`),
  and the goals of those present."""
  by = {(r["model"], r["width_asked"]): r for r in rows}
  out, goals = {}, {}
  for width in sorted({w for _, w in by}):
    hope = by["hope", width]
    out[f"ratio_matmul_fraction_w{width}"] = hope["matmul_fraction"]
    out[f"ratio_equal_params_w{width}"] = hope["tokens_per_s"] / by["transformer_equal_params", width]["tokens_per_s"]
    out[f"ratio_equal_width_w{width}"] = hope["tokens_per_s"] / by["transformer", width]["tokens_per_s"]
    goals.update({f"ratio_{name}_w{width}": goal for name, goal in GOALS.items()})
  return out, goals


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--widths", default="256,512")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--seq", type=int, default=64)
  parser.add_argument("--steps", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  matmul_call, matmul_flops = common.matmul_chain(1024)
  calls, rows, configs = {"matmul": matmul_call}, {}, {}
  for width in (int(w) for w in args.widths.split(",")):
    for name, cfg in models_at(width, args.batch, args.seq, args.steps).items():
      calls[name, width], row = lm_throughput.prepare(name, cfg)
      rows[name, width], configs[name, width] = {**row, "width_asked": width}, cfg
  seconds = common.interleaved(calls, repeats=args.repeats)
  matmul = matmul_flops / seconds.pop("matmul")
  rows = [lm_throughput.rates(rows[key], configs[key], seconds[key], matmul) for key in seconds]
  found, goals = ratios(rows)
  print(f"float32 matmul rate (8 chained 1024x1024 products, timed in turn): {matmul / 1e9:.1f} GFLOP/s")
  columns = ["model", "width_asked", "width", "params", "tokens_per_s", "gflops_per_s", "flops_per_token"]
  common.print_table(rows, [*columns, "matmul_fraction"])
  common.write_json(
    "hope_vs_transformer",
    {"matmul_gflops_per_s": matmul / 1e9, "rows": rows, **found, "goals": goals, "settings": vars(args)},
  )


if __name__ == "__main__":
  main()
