"""Where CompressARC's time goes on this machine: compiling a group, a step alone, two groups at once, two lanes.

For the smallest ARC-AGI-1 training puzzle's signature group (one puzzle),
measures the seconds to trace, lower and compile its training block
(`solve.compile_group`; each stage's wall and process CPU seconds apart: the
CPU seconds are steadier on a shared machine), the milliseconds per step of
that block alone, the milliseconds per step
of each of two copies run at once on two threads (what `solve(workers=2)`
does with two groups), and the milliseconds per step of one program holding
the puzzle twice as vmapped lanes. Ends with one JSON line.

    python benchmarks/compress_arc_step.py [--block 100] [--blocks 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import common  # noqa: E402


def cpu_seconds() -> float:
  """This process's user and system CPU seconds so far (every thread)."""
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--block", type=int, default=100, help="steps per compiled call")
  parser.add_argument("--blocks", type=int, default=3, help="calls timed (after one warm-up)")
  args = parser.parse_args()
  from contlearn import engine
  from contlearn.compress_arc import solve, task
  from contlearn.compress_arc.learner import SolverConfig, learner, puzzle_key

  puzzle = task.load("training", task.smallest("training", 1))[0]
  cfg = SolverConfig()

  def program(lanes: int):
    """({stage: (wall s, CPU s)} for trace, lower, compile; the compiled block call, a fresh state maker, env)
    for `lanes` copies, staged as `solve.compile_group` does it."""
    group = [puzzle] * lanes
    seconds, clock = {}, (time.perf_counter(), cpu_seconds())

    def lap(stage: str) -> None:
      nonlocal clock
      now = (time.perf_counter(), cpu_seconds())
      seconds[stage], clock = (now[0] - clock[0], now[1] - clock[1]), now

    traced = solve.trace_group(puzzle.signature, group, args.block, cfg)
    lap("trace")
    lowered = traced.lower()
    lap("lower")
    compiled = lowered.compile()
    lap("compile")
    solver = learner(puzzle.signature, cfg)
    fresh = lambda: engine.init(solver, jnp.stack([puzzle_key(0, puzzle.task_id)] * lanes), lanes=True)  # noqa: E731
    return seconds, compiled, fresh, jax.tree.map(jnp.asarray, task.stack(group))

  def train(run, state, env, out: list, i: int) -> None:
    """Warm-up call, then `--blocks` timed calls; ms per step into out[i]."""
    state, metrics = run(state, jnp.arange(args.block, dtype=jnp.int32), env)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for b in range(1, args.blocks + 1):
      state, metrics = run(state, jnp.arange(args.block, dtype=jnp.int32) + b * args.block, env)
    jax.block_until_ready(metrics)
    out[i] = (time.perf_counter() - start) / (args.blocks * args.block) * 1000

  stages, run, fresh, env = program(1)
  compile_s = sum(wall for wall, _ in stages.values())
  alone = [0.0]
  train(run, fresh(), env, alone, 0)
  both = [0.0, 0.0]
  threads = [threading.Thread(target=train, args=(run, fresh(), env, both, i)) for i in range(2)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  _, run2, fresh2, env2 = program(2)
  lanes = [0.0]
  train(run2, fresh2(), env2, lanes, 0)

  rows = [
    {"form": "one group alone", "ms per step": alone[0], "puzzle-steps per second": 1000 / alone[0]},
    {"form": "two groups at once, each", "ms per step": max(both), "puzzle-steps per second": 2000 / max(both)},
    {"form": "one program, two lanes", "ms per step": lanes[0], "puzzle-steps per second": 2000 / lanes[0]},
  ]
  common.print_table(rows, ["form", "ms per step", "puzzle-steps per second"])
  split = ", ".join(f"{stage} {wall:.1f} s ({cpu:.1f} CPU s)" for stage, (wall, cpu) in stages.items())
  print(f"signature {tuple(puzzle.signature)}: tracing, lowering and compiling one group: {compile_s:.1f} s ({split})")
  common.write_json(
    "compress_arc_step",
    {
      "benchmark": "compress_arc_step",
      "puzzle": puzzle.task_id,
      "block": args.block,
      "compile_s": compile_s,
      **{f"{stage}_s": wall for stage, (wall, _) in stages.items()},
      **{f"{stage}_cpu_s": cpu for stage, (_, cpu) in stages.items()},
      "alone_ms_per_step": alone[0],
      "two_threads_ms_per_step": both,
      "two_lanes_ms_per_step": lanes[0],
      "threads_speedup": 2 * alone[0] / max(both),
      "lanes_speedup": 2 * alone[0] / lanes[0],
    },
  )


if __name__ == "__main__":
  main()
