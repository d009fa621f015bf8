"""How large a model's carried memory grows on the domain-shift stream, chunk by chunk: a hook on the host loop.

    python examples/memory_growth.py                                  # Titans, the experiment's setting
    python examples/memory_growth.py --set step=token --set lr_init=0.02
    python examples/memory_growth.py --order 0,1,2,0 --seed 1 --phase-tokens 65536
    python examples/memory_growth.py --model hope --set decay_to_init=false --order 0 --phase-tokens 65536

Trains a model of `experiments/nl_domain_shift.py` (`--model`, a label of
its `MODELS`: titans by default, or hope; `--set FIELD=VALUE` on that
model's mixer config) on that experiment's stream, in the domain order
`--order` (default 1,2,0,1: scripture, Python docs, plays, scripture, the
order the experiment's Titans setting was chosen on), through
`engine.compile` and `loop.run`. After every chunk a hook reads the memory
the stream carries (`state.memory`) and prints its largest absolute entry
and where it is, beside the chunk's mean loss. A chunk that goes non-finite
stops the run (`NonFiniteError`) and is printed last. At the end it prints
the largest entry of every leaf of the last finite carried memory, for
Hope one per memory (the leaves' axis after batch rows and heads: k, v, eta,
alpha, momentum, mem, `SelfModifying.names`), and, for Hope with
`decay_to_init` (each memory `M_0 + D`), each memory's `|D| / |M_0|`
(Hope's per-chunk largest entry is mostly its convolution's carried
inputs, `conv`; the list at the end gives each memory's). Titans' memory
reads `x + LN(MLP(x))`, blind to the scale of the MLP's weights, so its loss can
look healthy while those weights grow by orders of magnitude. Writes
`OUT/memory_growth.json` (default OUT: runs/memory_growth_<model>).
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
from contlearn.models.hope import SelfModifyingTitansConfig
from contlearn.models.hope import spec as hope_spec
from contlearn.models.variants import select
from contlearn.overrides import apply_overrides

E = catalog.load("nl_domain_shift")  # the experiment beside the imported library, in any checkout


def largest_by_leaf(tree, memories: tuple[str, ...] = ()) -> dict[str, float]:
  """The largest |entry| of each float leaf of `tree`, by its path (finite: the loop stops on a non-finite state
  before any hook sees it).

  With `memories` (names along axis 2, after the stream's batch rows and the heads), one entry per memory of the
  leaves with that axis, keyed `path[name]`.
  """
  sizes = {}
  for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
    if not jnp.issubdtype(x.dtype, jnp.floating):
      continue
    x = np.abs(np.asarray(x))
    if memories and x.ndim > 2 and x.shape[2] == len(memories):
      by_memory = np.max(np.moveaxis(x, 2, 0).reshape(len(memories), -1), axis=1)
      sizes.update({f"{jax.tree_util.keystr(p)}[{name}]": float(v) for name, v in zip(memories, by_memory)})
    else:
      sizes[jax.tree_util.keystr(p)] = float(np.max(x))
  return sizes


def written_share(state, memories: tuple[str, ...]) -> dict[str, float]:
  """Hope with `decay_to_init`: per layer and memory, the written part's size beside the learned initial memory.

  `|D| / |M_0|`, Frobenius norms over the memory's weights and biases, the mean over the stream's batch rows and
  the heads; `D` is the carried `state.memory[layer]["w"]` ([rows, heads, memories, ...] leaves), `M_0` the parameters'
  `blocks[layer].mixer.sm.w0` ([heads, memories, ...]).
  """

  def squares(tree, keep: int) -> np.ndarray:  # sums of squares over all but the first `keep` axes
    leaves = [np.asarray(x, np.float64) for x in jax.tree_util.tree_leaves(tree)]
    return sum(np.sum(np.square(x).reshape(x.shape[:keep] + (-1,)), axis=-1) for x in leaves)

  shares = {}
  for layer, carried in enumerate(state.memory):
    m0 = state.params["blocks"][layer]["mixer"]["sm"]["w0"]
    ratio = np.mean(np.sqrt(squares(carried["w"], 3) / squares(m0, 2)), axis=(0, 1))  # [memories]
    shares.update({f"[{layer}][{name}]": float(r) for name, r in zip(memories, ratio)})
  return shares


class MemoryGrowth(loop.Hook):
  """Records each chunk's mean loss (nats per byte) and the carried memory's largest entry."""

  def __init__(self, memories: tuple[str, ...] = (), offset: bool = False):
    self.rows, self.loss, self.last, self.shares = [], {}, {}, {}
    self.memories, self.offset = memories, offset

  def on_metrics(self, lp, block, units, new_units, metrics):
    self.loss[block] = float(np.sum(metrics.nll) / np.sum(metrics.count))

  def after_block(self, lp):
    lp.settle()  # this chunk's metrics
    self.last = largest_by_leaf(lp.state.memory, self.memories)
    where, size = max(self.last.items(), key=lambda item: item[1])
    if self.offset:
      self.shares = written_share(lp.state, self.memories)
    self.rows.append({"chunk": lp.block, "loss": self.loss.get(lp.block), "largest": size, "where": where})
    print(f"chunk {lp.block:3d}: loss {self.loss.get(lp.block, math.nan):.3f}, largest |memory| {size:,.2f} at {where}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="titans", help="a label of the experiment's MODELS (titans, hope)")
  parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a field of its mixer")
  parser.add_argument("--order", default="1,2,0,1", help="domains of the phases (0 plays, 1 scripture, 2 docs)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--phase-tokens", type=int, default=None, help="tokens a phase (the experiment's by default)")
  parser.add_argument("--out", default=None, help="default runs/memory_growth_<model>")
  args = parser.parse_args()
  cfg = dataclasses.replace(E.get_config(), models=(args.model,), order=tuple(int(i) for i in args.order.split(",")))
  if args.phase_tokens:
    cfg = dataclasses.replace(cfg, phase_tokens=args.phase_tokens)
  model = select(E.MODELS, cfg.models, cfg.base.model)[args.model]
  model = dataclasses.replace(model, mixer=apply_overrides(model.mixer, args.set))
  run_cfg = dataclasses.replace(cfg.base, model=model)
  data = run_cfg.data
  print(f"{args.model}: {model.mixer}, domains {cfg.order}, seed {args.seed}")
  domains = E.Domains(cfg.domains, steps=data.steps, batch=data.batch, seq=data.seq, heldout=cfg.heldout)
  feed = E.PhaseFeed(domains.train, cfg.order, E.chunks_per_phase(cfg, data))
  learner = build_learner(run_cfg)
  state = engine.init(learner, jax.random.PRNGKey(args.seed))
  hope = isinstance(model.mixer, SelfModifyingTitansConfig)
  growth = MemoryGrowth(hope_spec(model.mixer, model).names if hope else (), hope and model.mixer.decay_to_init)
  stopped = None
  try:
    loop.run(engine.compile(learner, state), loop.Loop(state, feed.start()), feed, [growth], place=engine.place_xs)
  except NonFiniteError as e:
    stopped = str(e)
    print(stopped)
  print("largest |entry| of each leaf of the last finite carried memory:")
  for path, size in growth.last.items():
    print(f"  {path}: {size:.4g}")
  if growth.shares:
    print("|D| / |M_0| of each memory, the written part beside the learned initial memory:")
    for where, share in growth.shares.items():
      print(f"  {where}: {share:.4g}")
  out = pathlib.Path(args.out or f"runs/memory_growth_{args.model}")
  out.mkdir(parents=True, exist_ok=True)
  result = {"mixer": dataclasses.asdict(model.mixer), "order": cfg.order, "seed": args.seed}
  (out / "memory_growth.json").write_text(
    json.dumps(
      {
        **result,
        "chunks": growth.rows,
        "largest_by_leaf": growth.last,
        "written_share": growth.shares,
        "stopped": stopped,
      },
      indent=1,
    )
  )


if __name__ == "__main__":
  main()
