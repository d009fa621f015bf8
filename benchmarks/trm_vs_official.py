"""contlearn's TRM training step against the official TRM code's, on CPU.

    python benchmarks/trm_vs_official.py [--mixer attention mlp] [--repeats 5] [--peer PATH]

TRM with T = 2 rounds (H_cycles) of n = 3 latent updates (L_cycles), 2
layers, at most 8 segments, on the shared configuration of
benchmarks/official_recursive.py (width 64, batch 64, 6x6 Sudoku, a
16-position puzzle prefix, 2 heads, float32); `--mixer` picks the network
type of both ("attention", the default, or "mlp", TRM's `mlp_t`; both in
turn when given both). One step is one supervision segment; the official
TRM (`no_ACT_continue`) runs no extra forward for its halting head, and nor
does contlearn's. FLOPs per step count the matmuls of the 8 network calls
forward, the backward of the last round's 4, and the heads; at the official
SwiGLU widths for the official code (its `mlp_t` token SwiGLU is 256 wide
where contlearn's is 4 x 52 = 208). Prints a table; the last line is a JSON
object with `steps_per_s`, `peer_steps_per_s` and `ratio` (of the first
mixer; `by_mixer` holds each), also written to
`bench_results/trm_vs_official.json`.
"""

from __future__ import annotations

import functools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import official_recursive as shared  # noqa: E402
from contlearn.reasoning import trm  # noqa: E402

CYCLES, LATENT_STEPS = 2, 3


def step_flops(vocab: int, length: int, mixer: str, token_hidden: int, channel_hidden: int) -> int:
  """Matmul FLOPs of one TRM step: T (n + 1) calls forward, the last round's n + 1 differentiated, the heads."""
  tokens = length + shared.PUZZLE_TOKENS
  call = shared.network_call_flops(mixer, tokens, token_hidden, channel_hidden, shared.LAYERS)
  heads = 3 * 2 * shared.BATCH * (length * vocab + 1) * shared.WIDTH  # answer and halting heads, with backward
  return shared.step_flops(call, CYCLES * (LATENT_STEPS + 1), LATENT_STEPS + 1, heads)


def main() -> None:
  args = shared.arguments(__doc__.splitlines()[0])
  torch = shared.ensure_peer(args.peer)
  from models.recursive_reasoning.trm import TinyRecursiveReasoningModel_ACTV1

  vocab, length = shared.vocab_and_length()
  block = shared.sudoku_block()
  results = {}
  for mixer in args.mixer:
    cfg = shared.segment_config(trm.TRMConfig, vocab, length, mixer, cycles=CYCLES, latent_steps=LATENT_STEPS)
    official = dict(H_cycles=CYCLES, L_cycles=LATENT_STEPS, H_layers=0, L_layers=shared.LAYERS)
    torch.manual_seed(0)
    model = TinyRecursiveReasoningModel_ACTV1(
      shared.official_config(vocab, length, mixer, puzzle_emb_len=shared.PUZZLE_TOKENS, **official)
    )
    flops = functools.partial(step_flops, vocab, length, mixer)
    learner = trm.trm_learner(cfg, shared.BATCH)
    results[mixer] = shared.measure(torch, learner, model, block, args.repeats, cfg.tokens, flops)
  title = (
    f"TRM training step (one segment), T={CYCLES}, n={LATENT_STEPS}, {shared.LAYERS} layers, width {shared.WIDTH}, "
    f"batch {shared.BATCH}, 6x6 Sudoku ({length} tokens + {shared.PUZZLE_TOKENS} prefix, vocabulary {vocab}), float32"
  )
  config = {"model": "trm", "cycles": CYCLES, "latent_steps": LATENT_STEPS, "layers": shared.LAYERS, "vocab": vocab}
  shared.report("trm_vs_official", title, results, config, torch)


if __name__ == "__main__":
  main()
