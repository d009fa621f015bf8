"""What benchmarks/trm_vs_official.py and hrm_vs_official.py share: sizes, data, both timed steps, the report.

Both time one training step (one supervision segment: refill, forward, loss,
backward, optimizer steps) of contlearn's learner against the official
TRM/HRM code (github.com/SamsungSAILMontreal/TinyRecursiveModels, MIT,
benchmark-only; `--peer` points at its folder) on a CPU, on the same 6x6
Sudoku configuration: width 64, batch 64, 36 tokens after a 16-position
puzzle-embedding prefix (P D = 1024 learned numbers per puzzle in both; one
puzzle id, as in the official Sudoku data), vocabulary 7 (blank and the six
digits; the official data builder would add a padding token, 8), 2 heads,
float32. contlearn runs a compiled block of `STEPS` steps (`engine.compile`,
the state donated); the official code runs `STEPS` steps the way its
`pretrain.train_batch` does, with the carry kept across steps: the
`ACTLossHead(stablemax_cross_entropy)` forward, backward of loss / batch,
`CastedSparseEmbeddingSignSGD_Distributed` (world size 1) on the puzzle
table, torch `AdamW` (betas 0.9, 0.95, weight decay 0.1) in place of
AdamATan2 (whose extension builds for CUDA only), and the EMA of the weights
(`EMAHelper`, rate 0.999, as the paper's runs set `ema=True`; contlearn's rule
always keeps one). The two are timed in turn (median of `--repeats` blocks).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from benchmarks import common
from contlearn import engine
from contlearn.puzzles import PuzzleBlock, PuzzleConfig, PuzzleFeed, puzzle_kind, splits

WIDTH, BATCH, PUZZLE_TOKENS, HEADS, EXPANSION, LAYERS = 64, 64, 16, 2, 4, 2
MAX_SEGMENTS, STEPS, THREADS = 8, 8, 2
LR, PUZZLE_LR, WEIGHT_DECAY, EMA_RATE = 1e-4, 1e-2, 0.1, 0.999
PEER_PACKAGES = ["torch==2.13.0", "einops", "pydantic"]
# The official code (TinyRecursiveModels at e7b68717), checked out beside the repository unless --peer says where.
# the ratio to reach, contlearn's step against the official one (`run_all.py` prints it against its goal)
GOALS = {"ratio": 1.5}
DEFAULT_PEER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "peers", "TRM")


def arguments(description: str) -> argparse.Namespace:
  parser = argparse.ArgumentParser(description=description)
  parser.add_argument("--mixer", choices=("attention", "mlp"), nargs="+", default=["attention"])
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--peer", default=os.environ.get("CONTLEARN_TRM_PEER", DEFAULT_PEER))
  return parser.parse_args()


def ensure_peer(peer: str):
  """torch (pinned, CPU) with einops and pydantic installed if missing; the official code importable from `peer`."""
  if not os.path.isfile(os.path.join(peer, "models", "recursive_reasoning", "trm.py")):
    raise SystemExit(f"the official TRM/HRM code is not at {peer} (--peer)")
  if not all(importlib.util.find_spec(m) for m in ("torch", "einops", "pydantic")):
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
  sys.path.insert(0, os.path.abspath(peer))
  # Idle OpenMP threads sleep instead of spinning: on a shared, loaded machine spinning threads slow a
  # 2-thread torch step by 5-10x (measured: 5 s against 0.6 s per step); set before torch loads libgomp.
  os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
  import torch

  torch.set_num_threads(THREADS)
  return torch


def sudoku_block() -> PuzzleBlock:
  """`STEPS` steps of `BATCH` augmented 6x6 puzzles, int32 `[STEPS, BATCH, 36]`, every id 0."""
  train, _ = splits(PuzzleConfig(kind="sudoku", size=6, train=BATCH, test=0))
  block, _ = PuzzleFeed(train, steps=STEPS, batch=BATCH).next(0)
  return PuzzleBlock(*(np.asarray(a, np.int32) for a in (block.inputs, block.labels, np.zeros_like(block.ids))))


def vocab_and_length() -> tuple[int, int]:
  kind = puzzle_kind(PuzzleConfig(kind="sudoku", size=6))
  return kind.vocab, kind.length


def official_hidden(expansion: float, width: int) -> int:
  """The official SwiGLU's hidden width: `expansion * width * 2 / 3` rounded up to a multiple of 256."""
  return -(round(expansion * width * 2 / 3) // -256) * 256


def network_call_flops(mixer: str, tokens: int, token_hidden: int, channel_hidden: int, layers: int) -> int:
  """Matmul FLOPs of one call of f on `[BATCH, tokens, WIDTH]` (2 per multiply-add)."""
  b, s, d = BATCH, tokens, WIDTH
  if mixer == "attention":
    mix = 2 * b * s * d * 3 * d + 2 * 2 * b * s * s * d + 2 * b * s * d * d  # q k v, q k^T and weights v, out
  else:
    mix = 2 * b * d * s * 2 * token_hidden + 2 * b * d * token_hidden * s  # gate and up, down
  channels = 2 * b * s * d * 2 * channel_hidden + 2 * b * s * channel_hidden * d
  return layers * (mix + channels)


def step_flops(call_flops: int, forward_calls: int, differentiated_calls: int, head_flops: int) -> int:
  """Matmul FLOPs of a step: every forward call of f, twice more for each one differentiated (its backward)."""
  return (forward_calls + 2 * differentiated_calls) * call_flops + head_flops


def ours(learner, block: PuzzleBlock) -> Callable[[], Any]:
  """A call running one compiled block of `STEPS` learner steps, the state carried from call to call."""
  state = engine.init(learner, jax.random.key(0))
  run, xs = engine.compile(learner, state), engine.place_xs(block)
  box = {"state": state}

  def call():
    box["state"], metrics = run(box["state"], xs)
    return jax.block_until_ready((box["state"], metrics))

  return call


def official(torch, model, block: PuzzleBlock) -> Callable[[], Any]:
  """A call running `STEPS` training steps of an official ACT model (`pretrain.train_batch`'s step), the carry
  kept from step to step."""
  from models.ema import EMAHelper
  from models.losses import ACTLossHead
  from models.sparse_embedding import CastedSparseEmbeddingSignSGD_Distributed

  head = ACTLossHead(model, loss_type="stablemax_cross_entropy")
  head.train()
  optimizers = [
    CastedSparseEmbeddingSignSGD_Distributed(
      model.puzzle_emb.buffers(), lr=PUZZLE_LR, weight_decay=WEIGHT_DECAY, world_size=1
    ),
    torch.optim.AdamW(head.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=WEIGHT_DECAY),
  ]
  ema = EMAHelper(mu=EMA_RATE)
  ema.register(head)
  batches = [
    {"inputs": torch.from_numpy(i), "labels": torch.from_numpy(l), "puzzle_identifiers": torch.from_numpy(p)}
    for i, l, p in zip(block.inputs, block.labels, block.ids)
  ]
  box = {"carry": head.initial_carry(batches[0])}

  def call():
    for batch in batches:
      box["carry"], loss, _, _, _ = head(carry=box["carry"], batch=batch, return_keys=[])
      (loss / BATCH).backward()
      for optimizer in optimizers:
        optimizer.step()
        optimizer.zero_grad()
      ema.update(head)
    return loss

  return call


def official_config(vocab: int, length: int, mixer: str, **model: Any) -> dict:
  """The fields the official TRM and HRM configs share, at this benchmark's sizes."""
  return {
    "batch_size": BATCH,
    "seq_len": length,
    "puzzle_emb_ndim": PUZZLE_TOKENS * WIDTH,
    "num_puzzle_identifiers": 1,
    "vocab_size": vocab,
    "hidden_size": WIDTH,
    "expansion": EXPANSION,
    "num_heads": HEADS,
    "pos_encodings": "rope",
    "halt_max_steps": MAX_SEGMENTS,
    "halt_exploration_prob": 0.1,
    "forward_dtype": "float32",
    "mlp_t": mixer == "mlp",
    **model,
  }


def segment_config(config_class, vocab: int, length: int, mixer: str, **model: Any):
  """contlearn's TRM or HRM config at this benchmark's sizes (`model`: the recursion's own fields)."""
  return config_class(
    vocab=vocab,
    length=length,
    puzzles=1,
    width=WIDTH,
    layers=LAYERS,
    expansion=EXPANSION,
    mixer=mixer,
    heads=HEADS,
    puzzle_tokens=PUZZLE_TOKENS,
    max_segments=MAX_SEGMENTS,
    lr=LR,
    puzzle_lr=PUZZLE_LR,
    ema_rate=EMA_RATE,
    **model,
  )


def measure(torch, learner, model, block: PuzzleBlock, repeats: int, tokens: int, flops: Callable[[int, int], int]):
  """Both blocks timed in turn, and the FLOPs per step `flops(token_hidden, channel_hidden)` at each one's
  SwiGLU widths (contlearn's `expansion * width`, the official rounding)."""
  seconds = common.interleaved({"contlearn": ours(learner, block), "official": official(torch, model, block)}, repeats)
  return {
    "seconds": seconds["contlearn"],
    "peer_seconds": seconds["official"],
    "flops": flops(EXPANSION * tokens, EXPANSION * WIDTH),
    "peer_flops": flops(official_hidden(EXPANSION, tokens), official_hidden(EXPANSION, WIDTH)),
  }


def report(name: str, title: str, results: dict[str, dict], config: dict, torch) -> None:
  """Prints one table row per (mixer, implementation) and writes `bench_results/<name>.json`.

  `results[mixer]` holds `seconds` and `peer_seconds` (per block of `STEPS` steps) and `flops`, `peer_flops`
  (matmul FLOPs per step)."""
  rate = common.matmul_flops_per_s()
  rows, summary = [], {}
  for mixer, r in results.items():
    step, peer_step = r["seconds"] / STEPS, r["peer_seconds"] / STEPS
    for impl, t, flops in (("contlearn", step, r["flops"]), ("official", peer_step, r["peer_flops"])):
      rows.append(
        {
          "mixer": mixer,
          "impl": impl,
          "s/step": t,
          "steps/s": 1 / t,
          "ratio": peer_step / t,
          "GFLOP/step": flops / 1e9,
          "GFLOP/s": flops / t / 1e9,
          "fraction of matmul rate": flops / t / rate,
        }
      )
    summary[mixer] = {
      "steps_per_s": 1 / step,
      "peer_steps_per_s": 1 / peer_step,
      "ratio": peer_step / step,
      "flops_per_step": r["flops"],
      "peer_flops_per_step": r["peer_flops"],
      "fraction_of_matmul_rate": r["flops"] / step / rate,
      "peer_fraction_of_matmul_rate": r["peer_flops"] / peer_step / rate,
    }
  print(title)
  print(f"float32 matmul rate (1024^3, JAX): {rate / 1e9:.1f} GFLOP/s")
  columns = ["mixer", "impl", "s/step", "steps/s", "ratio", "GFLOP/step", "GFLOP/s", "fraction of matmul rate"]
  common.print_table(rows, columns)
  first = summary[next(iter(summary))]
  common.write_json(
    name,
    {
      **first,
      "by_mixer": summary,
      "matmul_flops_per_s": rate,
      "config": {**config, "batch": BATCH, "width": WIDTH, "heads": HEADS, "puzzle_tokens": PUZZLE_TOKENS},
      "steps_per_block": STEPS,
      "torch": torch.__version__,
      "torch_threads": torch.get_num_threads(),
      "load_average": os.getloadavg(),
      "goals": GOALS,
    },
  )
