"""contlearn's Titans memory against titans-pytorch's `NeuralMemory`, on CPU.

    python benchmarks/titans_vs_pytorch.py [--repeats 5] [--op-time]

Same configuration for both: width 256 (one head), chunk 64, a 2-layer MLP
memory (hidden 4x), batch 4 x 1024 tokens, forward and backward (gradients
of the summed output with respect to every parameter). titans-pytorch takes
one step per chunk, with momentum and decay constant within the chunk, and
every token reads the memory of a chunk boundary; contlearn's form of that is
`model.mixer.step=chunk`, timed as "contlearn, step per chunk" and giving the
`ratio`. contlearn's default (`step=token`: per-token momentum and decay,
each token reads the memory after its own step, more work) is timed beside
it (`ratio_token_step`). titans-pytorch and a
pinned CPU torch are benchmark-only dependencies, installed here if missing.
PyTorch uses as many threads as there are cores. The two are timed in turn
(median of `--repeats`), so both see the same machine load. titans-pytorch's
time depends on glibc's allocator: with
`GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4294967295`
set before the command it ran 2.0-2.8x faster, contlearn's forms unchanged
(docs/benchmarks.md). `--tuned-malloc` runs the benchmark so (both sides);
the JSON line's `machine.glibc_tunables` says which way a run went. Prints a table; the last
line is a JSON object with `tokens_per_s`, `peer_tokens_per_s` and `ratio`
(also written to `bench_results/titans_vs_pytorch.json`). With `--op-time`
it times nothing against the peer: it prints each of contlearn's two forms'
kernel time per call by class, from a profiler trace (`common.op_time`:
matrix products, copies and transposes, reductions, slices and broadcasts
(the scan's stacked carries), other element-wise kernels).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from contlearn.config import ModelConfig  # noqa: E402
from contlearn.models import build_mixer  # noqa: E402
from contlearn.models.titans import TitansConfig  # noqa: E402

DIM, CHUNK, DEPTH, EXPANSION, BATCH, SEQ = 256, 64, 2, 4, 4, 1024
PEER_PACKAGES = ["torch==2.13.0", "titans-pytorch"]
# the ratios to reach (`run_all.py` prints each against its goal)
GOALS = {"ratio": 5.0, "ratio_token_step": 3.0}


def ensure_peer() -> None:
  """Installs the pinned CPU torch and titans-pytorch if they are missing."""
  if importlib.util.find_spec("torch") and importlib.util.find_spec("titans_pytorch"):
    return
  subprocess.run([sys.executable, "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)


def ours(step: str):
  """A call running one forward+backward of contlearn's Titans mixer, `model.mixer.step=step`."""
  fn, args = jitted(step)
  return lambda: jax.block_until_ready(fn(*args))


def jitted(step: str):
  """The jitted forward+backward of contlearn's Titans mixer (`model.mixer.step=step`) and its arguments."""
  cfg = ModelConfig(
    mixer=TitansConfig(chunk=CHUNK, depth=DEPTH, expansion=EXPANSION, step=step),
    d_model=DIM,
    n_heads=1,
    n_layers=1,
  )
  mixer = build_mixer(cfg)
  params = mixer.init_params(jax.random.PRNGKey(0))
  x = jax.random.normal(jax.random.PRNGKey(1), (BATCH, SEQ, DIM), jnp.float32)
  mask = jnp.ones((BATCH, SEQ), bool)
  state = mixer.init_state(BATCH)

  @jax.jit
  def grads(p, state, x, mask):  # the inputs as arguments: XLA folds no part of the step into constants
    return jax.grad(lambda p: jnp.sum(mixer.apply(p, state, x, mask)[0]))(p)

  return grads, (params, state, x, mask)


def peer():
  """A call running one forward+backward of titans-pytorch's NeuralMemory."""
  import torch
  from titans_pytorch import NeuralMemory

  torch.set_num_threads(os.cpu_count() or 1)
  torch.manual_seed(0)
  mem = NeuralMemory(
    dim=DIM, chunk_size=CHUNK, default_model_kwargs=dict(depth=DEPTH, expansion_factor=float(EXPANSION))
  )
  x = torch.randn(BATCH, SEQ, DIM)

  def step():
    mem.zero_grad(set_to_none=True)
    retrieved, _ = mem(x)
    retrieved.sum().backward()

  return step


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--op-time", action="store_true", help="only contlearn's kernel time by class, per form")
  parser.add_argument("--tuned-malloc", action="store_true", help="run with glibc's malloc kept off mmap")
  args = parser.parse_args()
  if args.tuned_malloc:
    common.with_tuned_malloc()
  if args.op_time:
    for step in ("chunk", "token"):
      print(f"step per {step}: kernel ms per call by class", common.op_time(*jitted(step), split=False))
    return
  ensure_peer()
  import torch

  tokens = BATCH * SEQ
  calls = {
    "contlearn, step per chunk": ours("chunk"),
    "contlearn, step per token": ours("token"),
    "titans-pytorch": peer(),
  }
  seconds = common.interleaved(calls, args.repeats)
  t_ours, t_token, t_peer = seconds.values()
  rows = [{"impl": name, "seconds": t, "tokens_per_s": tokens / t} for name, t in seconds.items()]
  print(f"Titans memory, dim {DIM}, chunk {CHUNK}, {DEPTH}-layer MLP, batch {BATCH} x {SEQ}, forward+backward")
  common.print_table(rows, ["impl", "seconds", "tokens_per_s"])
  common.write_json(
    "titans_vs_pytorch",
    {
      "tokens_per_s": tokens / t_ours,
      "peer_tokens_per_s": tokens / t_peer,
      "ratio": t_peer / t_ours,
      "token_step_tokens_per_s": tokens / t_token,
      "ratio_token_step": t_peer / t_token,
      "config": {"dim": DIM, "chunk": CHUNK, "depth": DEPTH, "expansion": EXPANSION, "batch": BATCH, "seq": SEQ},
      "torch": torch.__version__,
      "torch_threads": torch.get_num_threads(),
      "goals": GOALS,
      "load_average": os.getloadavg(),  # 1, 5, 15 min; the run itself adds about 2
    },
  )


if __name__ == "__main__":
  main()
