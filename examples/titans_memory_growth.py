"""How large Titans' carried memory grows on the domain-shift stream, chunk by chunk: a hook on the host loop.

    python examples/titans_memory_growth.py                                  # the experiment's setting
    python examples/titans_memory_growth.py --set step=token --set lr_init=0.02
    python examples/titans_memory_growth.py --order 0,1,2,0 --seed 1 --phase-tokens 65536

Trains the Titans model of `experiments/nl_domain_shift.py` (its `MODELS`
entry, with `--set FIELD=VALUE` on its `TitansConfig`) on that experiment's
stream, in the domain order `--order` (default 1,2,0,1: scripture, Python
docs, plays, scripture, the order the experiment's Titans setting was chosen
on), through `engine.compile` and `loop.run`. After every chunk a hook reads
the memory the stream carries (`state.memory`) and prints its largest
absolute entry and where it is, beside the chunk's mean loss. A chunk that
goes non-finite stops the run (`NonFiniteError`) and is printed last. The
memory's read is `x + LN(MLP(x))`, blind to the scale of the MLP's weights,
so its loss can look healthy while those weights grow by orders of
magnitude. Writes `OUT/memory_growth.json` (default OUT:
runs/titans_memory_growth).
"""

import argparse
import dataclasses
import json
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from contlearn import catalog, engine, loop
from contlearn.errors import NonFiniteError
from contlearn.learner import build_learner
from contlearn.models.variants import select
from contlearn.overrides import apply_overrides

E = catalog.load("nl_domain_shift")  # the experiment beside the imported library, in any checkout


def largest(tree) -> tuple[float, str]:
  """The largest |entry| of the float leaves of `tree`, and its path.

  Finite: the loop stops on a non-finite state before any hook sees it.
  """
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  floats = [(p, x) for p, x in leaves if jnp.issubdtype(x.dtype, jnp.floating)]
  return max((float(np.max(np.abs(x))), jax.tree_util.keystr(p)) for p, x in floats)


class MemoryGrowth(loop.Hook):
  """Records each chunk's mean loss (nats per byte) and the carried memory's largest entry."""

  def __init__(self):
    self.rows, self.loss = [], {}

  def on_metrics(self, lp, block, units, new_units, metrics):
    self.loss[block] = float(np.sum(metrics.nll) / np.sum(metrics.count))

  def after_block(self, lp):
    lp.settle()  # this chunk's metrics
    size, where = largest(lp.state.memory)
    self.rows.append({"chunk": lp.block, "loss": self.loss.get(lp.block), "largest": size, "where": where})
    print(f"chunk {lp.block:3d}: loss {self.loss.get(lp.block, math.nan):.3f}, largest |memory| {size:,.2f} at {where}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a TitansConfig field")
  parser.add_argument("--order", default="1,2,0,1", help="domains of the phases (0 plays, 1 scripture, 2 docs)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--phase-tokens", type=int, default=None, help="tokens a phase (the experiment's by default)")
  parser.add_argument("--out", default="runs/titans_memory_growth")
  args = parser.parse_args()
  cfg = dataclasses.replace(E.get_config(), models=("titans",), order=tuple(int(i) for i in args.order.split(",")))
  if args.phase_tokens:
    cfg = dataclasses.replace(cfg, phase_tokens=args.phase_tokens)
  model = select(E.MODELS, cfg.models, cfg.base.model)["titans"]
  model = dataclasses.replace(model, mixer=apply_overrides(model.mixer, args.set))
  run_cfg = dataclasses.replace(cfg.base, model=model)
  data = run_cfg.data
  print(f"titans: {model.mixer}, domains {cfg.order}, seed {args.seed}")
  domains = E.Domains(cfg.domains, steps=data.steps, batch=data.batch, seq=data.seq, heldout=cfg.heldout)
  feed = E.PhaseFeed(domains.train, cfg.order, E.chunks_per_phase(cfg, data))
  learner = build_learner(run_cfg)
  state = engine.init(learner, jax.random.PRNGKey(args.seed))
  growth = MemoryGrowth()
  stopped = None
  try:
    loop.run(engine.compile(learner, state), loop.Loop(state, feed.start()), feed, [growth], place=engine.place_xs)
  except NonFiniteError as e:
    stopped = str(e)
    print(stopped)
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  result = {"mixer": dataclasses.asdict(model.mixer), "order": cfg.order, "seed": args.seed}
  (out / "memory_growth.json").write_text(json.dumps({**result, "chunks": growth.rows, "stopped": stopped}, indent=1))


if __name__ == "__main__":
  main()
