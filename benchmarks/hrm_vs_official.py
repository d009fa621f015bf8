"""contlearn's HRM training step against the official HRM code's, on CPU.

    python benchmarks/hrm_vs_official.py [--mixer attention mlp] [--repeats 5] [--peer PATH]

HRM with N = 2 high cycles (H_cycles) of T = 2 low steps (L_cycles), 2
layers in each module (H_layers = L_layers = 2), at most 8 segments, on the
shared configuration of benchmarks/official_recursive.py (width 64, batch 64,
6x6 Sudoku, a 16-position puzzle prefix, 2 heads, float32); `--mixer` picks
the network type of both ("attention", the official HRM's, the default, or
"mlp"). One step is one supervision segment: 6 module calls, the last f_L
and f_H differentiated, and in both implementations a no-gradient extra
segment (6 more calls) for the Q-continue target. FLOPs per step count those
matmuls and the heads, at the official SwiGLU widths for the official code.
Prints a table; the last line is a JSON object with `steps_per_s`,
`peer_steps_per_s` and `ratio` (of the first mixer; `by_mixer` holds each),
also written to `bench_results/hrm_vs_official.json`.
"""

from __future__ import annotations

import functools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import official_recursive as shared  # noqa: E402
from contlearn.reasoning import hrm  # noqa: E402

HIGH_CYCLES, LOW_STEPS = 2, 2


def step_flops(vocab: int, length: int, mixer: str, token_hidden: int, channel_hidden: int) -> int:
  """Matmul FLOPs of one HRM step: N (T + 1) calls forward twice (the segment and the target's), 2 differentiated,
  and the heads (the answer head with backward, both Q heads on both segments)."""
  tokens = length + shared.PUZZLE_TOKENS
  call = shared.network_call_flops(mixer, tokens, token_hidden, channel_hidden, shared.LAYERS)
  heads = 2 * shared.BATCH * shared.WIDTH * (3 * length * vocab + 4 * 2)
  return shared.step_flops(call, 2 * HIGH_CYCLES * (LOW_STEPS + 1), 2, heads)


def main() -> None:
  args = shared.arguments(__doc__.splitlines()[0])
  torch = shared.ensure_peer(args.peer)
  from models.recursive_reasoning.hrm import HierarchicalReasoningModel_ACTV1

  vocab, length = shared.vocab_and_length()
  block = shared.sudoku_block()
  results = {}
  for mixer in args.mixer:
    cfg = shared.segment_config(hrm.HRMConfig, vocab, length, mixer, high_cycles=HIGH_CYCLES, low_steps=LOW_STEPS)
    official = dict(H_cycles=HIGH_CYCLES, L_cycles=LOW_STEPS, H_layers=shared.LAYERS, L_layers=shared.LAYERS)
    torch.manual_seed(0)
    model = HierarchicalReasoningModel_ACTV1(shared.official_config(vocab, length, mixer, **official))
    flops = functools.partial(step_flops, vocab, length, mixer)
    learner = hrm.hrm_learner(cfg, shared.BATCH)
    results[mixer] = shared.measure(torch, learner, model, block, args.repeats, cfg.tokens, flops)
  title = (
    f"HRM training step (one segment), N={HIGH_CYCLES}, T={LOW_STEPS}, {shared.LAYERS}+{shared.LAYERS} layers, "
    f"width {shared.WIDTH}, batch {shared.BATCH}, 6x6 Sudoku ({length} tokens + {shared.PUZZLE_TOKENS} prefix, "
    f"vocabulary {vocab}), float32"
  )
  config = {"model": "hrm", "high_cycles": HIGH_CYCLES, "low_steps": LOW_STEPS, "layers": shared.LAYERS, "vocab": vocab}
  shared.report("hrm_vs_official", title, results, config, torch)


if __name__ == "__main__":
  main()
