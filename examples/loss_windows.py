"""A run's training loss and gradient norms per window of steps, per seed, from its loss logs.

nl_niah and mqar log each block's mean loss and the mean and largest global
norm of its steps' gradients (before clipping), one value per seed lane, in
each model's `metrics.jsonl` (`synthetic.LossLog`). This prints them over
windows of `--every` steps (`synthetic.loss_windows`), one table per model:

    python examples/loss_windows.py runs/niah_plain_ef6ce31 --every 100

Each row: the window's steps, then per lane the mean loss, the mean
gradient norm and the largest one. Ends with the JSON of every table.
"""

from __future__ import annotations

import argparse
import json
import pathlib

from contlearn import run_log, synthetic


def tables(run: pathlib.Path, every: int) -> dict[str, list[dict]]:
  """{model folder (relative to `run`): its windows} for every `metrics.jsonl` under `run` with gradient norms."""
  out = {}
  for path in sorted(run.rglob("metrics.jsonl")):
    records = run_log.read_jsonl(path)
    if records and "grad_norm" in records[0]:
      out[str(path.parent.relative_to(run))] = synthetic.loss_windows(records, every)
  return out


def lanes(values: list[float]) -> str:
  return " / ".join(f"{v:.3f}" for v in values)


def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("run", type=pathlib.Path, help="a run's output folder")
  parser.add_argument("--every", type=int, default=100, help="steps per window")
  args = parser.parse_args(argv)
  found = tables(args.run, args.every)
  if not found:
    raise SystemExit(f"{args.run}: no metrics.jsonl with gradient norms under it")
  for model, windows in found.items():
    print(f"{model}: steps, then per lane: loss | mean gradient norm | largest")
    for w in windows:
      print(
        f"  {w['first']:>6}-{w['last']:<6} {lanes(w['loss'])} | {lanes(w['grad_norm'])} | {lanes(w['grad_norm_max'])}"
      )
  print(json.dumps(found))
  return found


if __name__ == "__main__":
  main()
