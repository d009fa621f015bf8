"""Full attention's MQAR recall from two starts of each seed, on the same batches.

The MQAR experiment's full-attention row learns recall at 512 keys on some
seeds and sits at the 1/n plateau on others (docs/memories.md). The
learner draws a seed's parameters from the first key of
split(PRNGKey(s)); the script that ran MQAR before the engine drew them
from PRNGKey(s) itself. This trains both starts of every seed as lanes of one
program at the experiment's settings: lane 2j is seed j's start as the
experiment draws it (the same lane as `contlearn run mqar --only
attention`), lane 2j+1 the same state with its parameters from
`model.init_params(PRNGKey(s))`. Both lanes of a seed read the seed's
batches (fold_in(PRNGKey(s), i)) and learn at the one rate of `lrs`. Prints
each lane's training loss (the mean of the block ending at every
`--every`-th step) and its test recall at
each pair count (the experiment's test sequences), then the JSON of every
value; the run folder (`--out`) holds metrics.jsonl and resumes with
`--resume`.

    python examples/mqar_attention_starts.py --seeds 0,1,2
    python examples/mqar_attention_starts.py --seeds 0 --set steps=600 --out runs/starts_600

`--set FIELD=VALUE` sets a field of the experiment's config (`MqarConfig`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp

from contlearn import catalog, engine, run_log
from contlearn.errors import ConfigError
from contlearn.overrides import apply_overrides

MQAR = catalog.load(str(pathlib.Path(__file__).resolve().parents[1] / "experiments" / "mqar.py"))
STARTS = ("engine", "PRNGKey(seed)")  # lane 2j, lane 2j+1


def config(seeds: list[int], settings: list[str]):
  """The experiment's config for the full-attention row at `seeds`, with `settings` applied.

  Raises:
    ConfigError: a bad setting, or more than one rate in `lrs`.
  """
  cfg = apply_overrides(MQAR.get_config(), settings)
  cfg = MQAR.resolved(dataclasses.replace(cfg, models=("attention",), seeds=tuple(seeds)))
  if len(cfg.lrs) != 1:
    raise ConfigError(f"lrs={cfg.lrs}: both starts learn at one rate; give one")
  return cfg


def two_starts(cfg, model, learner) -> tuple[engine.LearnerState, jax.Array]:
  """The lane-stacked initial state ([2 x seeds] lanes, `STARTS` alternating) and each lane's key
  (PRNGKey(seed), its batches' key)."""
  seed_keys = engine.seed_keys(cfg.seeds)  # [S, 2]
  keys = jnp.repeat(seed_keys, 2, axis=0)
  state = engine.init(learner, keys, lanes=True)
  own = jax.vmap(model.init_params)(seed_keys)
  params = jax.tree.map(lambda p, o: p.at[1::2].set(o), state.params, own)
  rates = jnp.full((len(keys),), cfg.lrs[0], jnp.float32)
  return MQAR.with_rates(state.replace(params=params), rates), keys


def main(argv: list[str] | None = None) -> dict:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--seeds", default="0,1,2", help="seeds, each trained from both starts")
  parser.add_argument("--every", type=int, default=500, help="steps between the printed losses")
  parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a field of MqarConfig")
  parser.add_argument("--out", default="runs/mqar_attention_starts", help="the run folder")
  parser.add_argument("--resume", action="store_true", help="resume the run in --out")
  args = parser.parse_args(argv)
  cfg = config([int(s) for s in args.seeds.split(",")], args.set)
  out = pathlib.Path(args.out)
  model, learner, _ = MQAR.learner_and_state(cfg, MQAR.ROWS["attention"])
  state, keys = two_starts(cfg, model, learner)
  saved = {**MQAR._defining(MQAR._json(cfg)), "starts": list(STARTS)}
  run, log = MQAR.train_lanes(
    cfg, learner, lambda: state, keys, out, "attention starts", saved, resume=args.resume, progress=True
  )
  records = run_log.read_jsonl(out / "metrics.jsonl")
  test = MQAR.recall_on_test(cfg, MQAR.accuracy_fn(cfg, model), run.state)
  lanes = []
  for lane in range(len(keys)):
    seed, start = cfg.seeds[lane // 2], STARTS[lane % 2]
    losses = {r["step"]: r["loss"][lane] for r in records if r["step"] % args.every == 0}
    recall = {f"n={n}": float(a[lane]) for n, a in test.items()}
    lanes.append({"seed": seed, "start": start, "loss": losses, **recall, "final_loss": float(log.tail()[lane])})
    shown = ", ".join(f"{k} {v:.3f}" for k, v in recall.items())
    trace = ", ".join(f"{s}: {v:.2f}" for s, v in losses.items())
    print(f"seed {seed}, start {start}: loss by step {{{trace}}}; recall {shown}", flush=True)
  result = {"steps": cfg.steps, "lr": cfg.lrs[0], "seconds": run.seconds, "lanes": lanes}
  print(json.dumps(result))
  return result


if __name__ == "__main__":
  main()
