"""Where Hope's training step spends its time: the self-modifying memories by part.

    python benchmarks/hope_profile.py [--widths 256,512] [--repeats 5] [--op-time] [--kernels 12]

At each width, the byte LM of `lm_throughput.py` (2 layers, heads of 32, CMS
1/16/256, 8 lanes x 64 tokens) and, at the shapes of one of its layers, the
self-modifying memories of every lane and head (`self_modifying.chunked`)
and their parts, each forward and backward alone (gradient of the sum of its
outputs with respect to every float input):

    reads        the projection memories read x (`stacked_apply`); k, v, rates and q made
    proj_writes  the projection memories' writes over the block (`advance`, one chunk)
    main_memory  the main memory over the block (`main_memory`, a scan over chunks)

Per row: GFLOP of one call (XLA's cost analysis, as `lm_throughput.py`; it
counts a loop's body once), the GFLOP of its matrix products alone with every
scan step counted (`dot_gflop`, from the jaxpr), median milliseconds (the
rows timed in turn, so all see the same load), GFLOP/s, the fractions of the
matmul rate measured in the same run (of both counts), the share of the
step's time (`memories` and its parts run once per layer: times 2 for the
step), and `faulted_mib`: the MiB of pages one call touches for the first
time (minor page faults, `common.faulted_mib`), buffers that come fresh from
the kernel rather than reused.
One more row, `products`: the projection writes' three kinds of matrix
product alone at their shapes (`k W_a`, `h W_b`, `k^T u`, batched over
lanes, heads and memories), forward only, no elementwise work: the rate XLA's
batched products reach at these shapes, an upper bound for any form of the
memories that does its work as such products on this machine.
Below the table, the opcodes of the memories' compiled program (forward and
backward): how many dots, fusions, loops, copies and transposes it runs, and
with `--op-time` the time of its kernels by class, from a profiler trace
(kernel time summed over both cores, so it exceeds the wall time when two
kernels run at once), forward and backward apart; with `--kernels N` the
training step's N costliest kernels (`common.costliest_kernels`: time a run,
share of the traced kernel time, result shape, pass and op).
"""

from __future__ import annotations

import argparse
import collections
import pathlib
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from benchmarks import common  # noqa: E402
from contlearn.config import Config, DataConfig  # noqa: E402
from contlearn.learner import build_learner  # noqa: E402
from contlearn.memories import self_modifying as sm  # noqa: E402
from contlearn.memories.core import masked_rates  # noqa: E402
from contlearn.models import hope  # noqa: E402
from contlearn.stream import Chunk  # noqa: E402

LAYERS = 2
OP_CLASSES = {
  "dot": ("dot",),
  "fusion": ("fusion",),
  "loop": ("while",),
  "copy/transpose": ("copy", "transpose"),
  "gather/scatter": ("gather", "scatter", "dynamic-slice", "dynamic-update-slice"),
  "reduce": ("reduce", "reduce-window"),
}


def _grad_of_sum(fn, in_axes):
  """Forward and backward of `sum(fn(*args))` over [B, H] (`in_axes` over heads; params are shared by the
  lanes) with respect to every argument."""
  fn = jax.vmap(jax.vmap(fn, in_axes=in_axes), in_axes=(None,) + (0,) * (len(in_axes) - 1))
  total = lambda args: sum(jnp.sum(x) for x in jax.tree.leaves(fn(*args)))
  return jax.jit(lambda *args: jax.grad(total, allow_int=True)(args))


def memory_parts(spec: sm.SelfModifying, batch: int, heads: int, dh: int, seq: int) -> dict:
  """name -> (jitted forward and backward, args): the memories and their parts at one layer's shapes."""
  rule, n = spec.rule, len(spec.projections)
  params, state = jax.vmap(lambda kk: sm.init(spec, kk, dh))(jax.random.split(jax.random.PRNGKey(0), heads))
  state = jax.tree.map(lambda a: jnp.broadcast_to(a, (batch, *a.shape)) + 0.01, state)
  x = jax.random.normal(jax.random.PRNGKey(1), (batch, heads, seq, dh))
  mask = jnp.ones((batch, heads, seq), bool)
  take = lambda tree, *index: jax.tree.map(lambda a: a[index], tree)  # index past the leading heads (and lanes)
  p_proj = {**params, "w0": take(params["w0"], slice(None), slice(0, n))}
  o_mem = {"offset": take(params["w0"], slice(None), n)}
  s_proj, s_mem = take(state, slice(None), slice(None), slice(0, n)), take(state, slice(None), slice(None), n)
  per_token = lambda rates, c: rates._replace(lr=rates.lr / c)

  def reads(p, s, x):
    r = sm.stacked_apply(rule, *sm.stacked_layers(rule, rule.model.weights(s.w, {"offset": p["w0"]})), x)
    return sm.generate(spec, p, dict(zip(spec.projections, r)), x), sm.query(p, x)

  def proj_writes(p, s, k, v, rates, mask):
    weights = rule.model.weights(s.w, {"offset": p["w0"]})
    rates = masked_rates(per_token(rates, spec.chunk_proj), mask)
    return sm.advance(rule, s, weights, k, v, rates, mask.astype(k.dtype), spec.chunk_proj)

  def main_memory(o, s, q, k, v, rates, mask):
    return sm.main_memory(spec, o, s, q, k, v, per_token(rates, spec.chunk_mem), mask)

  (k, v, rates), q = jax.jit(jax.vmap(jax.vmap(reads), in_axes=(None, 0, 0)))(p_proj, s_proj, x)
  memories = lambda p, s, x, mask: sm.chunked(spec, p, s, x, mask)
  return {
    "memories": (_grad_of_sum(memories, (0, 0, 0, 0)), (params, state, x, mask)),
    "reads": (_grad_of_sum(reads, (0, 0, 0)), (p_proj, s_proj, x)),
    "proj_writes": (_grad_of_sum(proj_writes, (0,) * 6), (p_proj, s_proj, k, v, rates, mask)),
    "main_memory": (_grad_of_sum(main_memory, (0,) * 7), (o_mem, s_mem, q, k, v, rates, mask)),
  }


def products(spec: sm.SelfModifying, batch: int, heads: int, dh: int, seq: int):
  """The projection writes' matrix products alone, forward, at one layer's shapes (`products` row)."""
  n, hidden = len(spec.projections), spec.rule.model.expansion * dh
  keys = jax.random.split(jax.random.PRNGKey(2), 4)
  b = batch * heads  # every product batched over lanes, heads and the stack (its most favourable form)
  k = jax.random.normal(keys[0], (b, n, seq, dh))
  w_a = jax.random.normal(keys[1], (b, n, dh, hidden))
  w_b = jax.random.normal(keys[2], (b, n, hidden, dh))
  u = jax.random.normal(keys[3], (b, n, seq, hidden))

  @jax.jit
  def call(k, w_a, w_b, u):
    z = jnp.einsum("bstd,bsdh->bsth", k, w_a)  # the stack's first layer at the keys
    y = jnp.einsum("bsth,bshd->bstd", u, w_b)  # its second layer
    step = jnp.einsum("bstd,bsth->bsdh", k, u)  # a write: keys times the first layer's output gradients
    return z, y, step

  return call, (k, w_a, w_b, u)


def train_step(width: int, batch: int, seq: int):
  """The byte LM's jitted training step and its arguments."""
  cfg = Config(
    data=DataConfig(batch=batch, seq=seq, steps=1),
    model=hope.hope(d_model=width, n_heads=width // 32, n_layers=LAYERS),
  )
  learner = build_learner(cfg)
  state = learner.init(jax.random.PRNGKey(0))
  tokens = np.random.default_rng(0).integers(0, 256, (batch, seq + 1)).astype(np.int32)
  return jax.jit(learner.step), (state, Chunk(tokens, np.ones((batch, seq), bool)))


def flops(fn, args) -> float:
  cost = fn.lower(*args).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost["flops"])


PLUMBING = ("parameter", "constant", "get-tuple-element", "tuple", "bitcast")


def op_counts(fn, args) -> dict:
  """The kernels the compiled program runs: the instructions of its entry and loop bodies (fusions count once,
  plumbing not at all) by class (OP_CLASSES, the rest as `other`), and its loops' trip counts."""
  text = fn.lower(*args).compile().as_text()
  bodies = {"main"} | set(re.findall(r"body=%([\w.-]+)", text))
  computations = re.findall(r"^(?:ENTRY )?%([\w.-]+) [^\n]*\{\n(.*?)\n\}", text, re.M | re.S)
  opcodes = collections.Counter()
  for name, body in computations:
    if name in bodies or name.startswith("main"):
      opcodes.update(o for o in re.findall(r"=\s*\S+\s+([a-z][\w-]*)\(", body) if o not in PLUMBING)
  counts = {cls: sum(opcodes[o] for o in ops) for cls, ops in OP_CLASSES.items()}
  counts["other"] = sum(opcodes.values()) - sum(counts.values())
  counts["loop"] = len(re.findall(r"\swhile\(", text))
  counts["loop_trips"] = [int(n) for n in re.findall(r'known_trip_count[^0-9]*"n":"(\d+)"', text)]
  return counts


def dot_flops(fn, args) -> float:
  """FLOPs of the matrix products of `fn(*args)`, from its jaxpr, a scan's body counted once per step (XLA's cost
  analysis counts a loop's body once)."""

  def count(jaxpr) -> float:
    total = 0.0
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "dot_general":
        (contract, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval.shape
        total += 2.0 * np.prod(eqn.outvars[0].aval.shape) * np.prod([lhs[d] for d in contract])
      repeat = eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1
      for sub in jax.extend.core.jaxprs_in_params(eqn.params):
        total += repeat * count(sub)
    return total

  return count(jax.make_jaxpr(fn)(*args).jaxpr)


def profile(
  width: int, batch: int, seq: int, repeats: int, matmul: float, timed_ops: bool, kernels: int = 0
) -> tuple[list[dict], dict]:
  heads, dh = width // 32, 32
  model = hope.hope(d_model=width, n_heads=heads, n_layers=LAYERS)
  spec = hope.spec(model.mixer, model)
  calls = {
    "train_step": train_step(width, batch, seq),
    **memory_parts(spec, batch, heads, dh, seq),
    "products": products(spec, batch, heads, dh, seq),
  }
  seconds = common.interleaved(
    {name: lambda f=f, a=a: jax.block_until_ready(f(*a)) for name, (f, a) in calls.items()}, repeats
  )
  step = seconds["train_step"]
  rows = []
  for name, (fn, args) in calls.items():
    gflop, dot_gflop = flops(fn, args) / 1e9, dot_flops(fn, args) / 1e9
    rows.append(
      {
        "width": width,
        "part": name,
        "gflop": gflop,
        "dot_gflop": dot_gflop,
        "ms": seconds[name] * 1e3,
        "gflops_per_s": gflop / seconds[name],
        "matmul_fraction": gflop * 1e9 / seconds[name] / matmul,
        "dot_fraction": dot_gflop * 1e9 / seconds[name] / matmul,
        "share_of_step": (1 if name == "train_step" else LAYERS) * seconds[name] / step,  # products: of no step
        "faulted_mib": common.faulted_mib(lambda f=fn, a=args: f(*a)),
      }
    )
  ops = op_counts(*calls["memories"])
  if timed_ops:
    ops["op_ms"] = {name: common.op_time(*calls[name]) for name in ("train_step", "memories")}
  if kernels:
    fn, args = calls["train_step"]
    text = fn.lower(*args).compile().as_text()
    ops["kernels"] = common.costliest_kernels(lambda: jax.block_until_ready(fn(*args)), text, kernels, repeats)
  return rows, ops


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--widths", default="256,512")
  parser.add_argument("--batch", type=int, default=8)
  parser.add_argument("--seq", type=int, default=64)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--op-time", action="store_true", help="kernel time by class, from a profiler trace")
  parser.add_argument("--kernels", type=int, default=0, help="also the training step's N costliest kernels")
  args = parser.parse_args()
  matmul = common.matmul_flops_per_s()
  rows, ops = [], {}
  for width in (int(w) for w in args.widths.split(",")):
    part_rows, ops[width] = profile(width, args.batch, args.seq, args.repeats, matmul, args.op_time, args.kernels)
    rows += part_rows
  print(f"float32 matmul rate (1024x1024, measured): {matmul / 1e9:.1f} GFLOP/s")
  common.print_table(
    rows,
    [
      "width",
      "part",
      "gflop",
      "dot_gflop",
      "ms",
      "gflops_per_s",
      "matmul_fraction",
      "dot_fraction",
      "share_of_step",
      "faulted_mib",
    ],
  )
  for width, counts in ops.items():
    compiled = ", ".join(f"{k} {v}" for k, v in counts.items() if k not in ("op_ms", "kernels"))
    print(f"width {width}, memories forward+backward, compiled ops: {compiled}")
    for name, classes in counts.get("op_ms", {}).items():
      print(f"width {width}, {name}, kernel ms by class: " + ", ".join(f"{k} {v}" for k, v in classes.items()))
    if counts.get("kernels"):
      print(f"width {width}, train_step: the {len(counts['kernels'])} costliest kernels, microseconds a run (profiled)")
      common.print_table(counts["kernels"], common.KERNEL_COLUMNS)
  common.write_json(
    "hope_profile", {"matmul_gflops_per_s": matmul / 1e9, "rows": rows, "ops": ops, "settings": vars(args)}
  )


if __name__ == "__main__":
  main()
