"""Continual-learning strategies on the byte LM (`sequence_task_model`) through the sequence learner."""

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from contlearn import catalog, engine, loop, strategies
from contlearn.config import ModelConfig
from contlearn.errors import ConfigError
from contlearn.learner import Sequences, sequence_learner, sequence_task_model
from contlearn.models import byte_lm
from contlearn.strategies import importance, regularization
from contlearn.stream import Chunk

SEQ, BATCH, STEPS = 8, 2, 3
MODEL = byte_lm(ModelConfig(mixer="linear_attention", d_model=16, n_layers=1, n_heads=2, mlp_ratio=2))
TM = sequence_task_model(MODEL, SEQ)


def _chunk(seed, steps=STEPS):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(0, 256, (steps, BATCH, SEQ + 1)).astype(np.int32)
  return Chunk(jnp.asarray(tokens), jnp.ones((steps, BATCH, SEQ), bool))


def _rows(seed, n):
  rng = np.random.default_rng(seed)
  return Sequences(jnp.asarray(rng.integers(0, 256, (n, SEQ + 1)).astype(np.int32)), jnp.ones((n, SEQ), bool))


STRATEGIES = {
  "naive": {},
  "l2": {},
  "ewc": dict(n_fisher=4, chunk=2),
  "online_ewc": dict(n_fisher=4, chunk=2),
  "si": {},
  "mas": dict(n_samples=4, chunk=2),
  "lwf": {},
  "er": dict(capacity=5, replay_batch=3),
  "der": dict(capacity=5, replay_batch=3),
  "derpp": dict(capacity=5, replay_batch=3),
  "agem": dict(capacity=8, per_task=4, ref_batch=3),
}


# DER++ (replay with stored outputs and a task end) in `make test`, EWC through
# its Fisher test below; every strategy in `make test-all`.
FAST = ("derpp",)


@pytest.mark.parametrize(
  "name", [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in sorted(STRATEGIES)]
)
def test_each_strategy_learns_the_byte_lm_across_a_task_end(name):
  strategy = strategies.make(name, TM, **STRATEGIES[name])
  learner = sequence_learner(MODEL, optax.adam(1e-2), BATCH, strategy=strategy)
  state = engine.init(learner, jax.random.key(0))
  run = engine.compile(learner, state)
  finish = engine.compile_call(strategies.end_of_task(strategy))
  before = jax.tree.map(np.asarray, state.params)
  state, first = run(state, _chunk(1))
  state = finish(state, _rows(2, 6), 0)
  state, second = run(state, _chunk(3))
  for metrics in (first, second):
    assert np.all(np.isfinite(np.asarray(metrics.nll))) and np.all(np.asarray(metrics.count) == SEQ * BATCH)
  assert all(np.all(np.isfinite(np.asarray(p))) for p in jax.tree.leaves(state.params))
  assert not np.allclose(np.asarray(jax.tree.leaves(state.params)[0]), jax.tree.leaves(before)[0])
  assert int(state.step) == 2 * STEPS


def test_strategies_that_need_classes_or_an_mlp_refuse_the_lm():
  with pytest.raises(ConfigError, match="gdumb needs a model with classes"):
    strategies.make("gdumb", TM, optimizer=optax.sgd(0.1))
  with pytest.raises(ConfigError, match="MLP"):
    strategies.make("cbp", TM).init(MODEL.init_params(jax.random.key(0)), jax.random.key(1))
  with pytest.raises(ConfigError, match="sequence_task_model"):
    strategies.make("er", sequence_task_model(MODEL)).init(MODEL.init_params(jax.random.key(0)), None)


@pytest.mark.slow
def test_er_buffer_holds_lm_rows_as_a_reservoir():
  strategy = strategies.make("er", TM, capacity=4, replay_batch=2)
  learner = sequence_learner(MODEL, optax.sgd(0.0), BATCH, strategy=strategy)
  state = engine.init(learner, jax.random.key(0))
  chunk = _chunk(5, steps=6)
  state, _ = engine.compile(learner, state)(state, chunk)
  buf = state.strategy
  assert buf.rows.memory is None and buf.outputs == ()  # tokens and mask only: replayed from a fresh memory
  assert int(buf.seen) == 6 * BATCH
  seen = np.asarray(chunk.tokens).reshape(6 * BATCH, SEQ + 1)
  kept = np.asarray(buf.rows.tokens)
  index = [int(np.flatnonzero((seen == row).all(axis=1))[0]) for row in kept]  # each kept row was seen
  assert len(set(index)) == 4  # no row twice
  assert index[:2] != [0, 1] or index[2:] != [2, 3]  # later rows displaced some of the first four
  # The first 4 rows fill the buffer in order (reservoir algorithm R).
  state = engine.init(learner, jax.random.key(0))
  state, _ = engine.compile(learner, state)(state, _chunk(5, steps=2))
  np.testing.assert_array_equal(np.asarray(state.strategy.rows.tokens), seen[:4])


def _row_log_prob(params, tokens):
  """log p(tokens[1:] | tokens[:-1]) of one sequence, from a fresh memory, summed by hand."""
  logits, _ = MODEL.apply(params, MODEL.init_memory(1), tokens[None, :-1], jnp.ones((1, SEQ), bool))
  logp = jax.nn.log_softmax(logits[0])
  return sum(logp[t, tokens[t + 1]] for t in range(SEQ))


@pytest.mark.slow
def test_ewc_fisher_on_the_lm_equals_squared_per_sequence_gradients():
  params = MODEL.init_params(jax.random.key(3))
  rows = _rows(4, 4)
  want = jax.tree.map(jnp.zeros_like, params)
  for i in range(4):
    g = jax.grad(_row_log_prob)(params, rows.tokens[i])
    want = jax.tree.map(lambda w, gi: w + gi * gi / 4, want, g)
  got = importance.fisher(TM, params, rows, chunk=2)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=1e-9)
  assert sum(float(jnp.sum(f)) for f in jax.tree.leaves(got)) > 0


@pytest.mark.slow
def test_ewc_penalty_on_the_lm_is_zero_at_the_anchor_and_grows_away_from_it():
  strategy = strategies.make("ewc", TM, n_fisher=4, chunk=2)
  learner = sequence_learner(MODEL, optax.adam(1e-2), BATCH, strategy=strategy)
  state = engine.init(learner, jax.random.key(0))
  state, _ = engine.compile(learner, state)(state, _chunk(1))
  rows = _rows(2, 4)
  # The task ends through the host loop's hook, after the feed's last block of task 0.
  feed_blocks = [_chunk(1)]

  class Feed:
    def start(self):
      return 0

    def next(self, position):
      return (feed_blocks[position], position + 1) if position < len(feed_blocks) else (None, position)

    def describe(self):
      return "two blocks"

  hook = strategies.TaskEnd(strategy, lambda run: (0, rows) if run.position == 1 else None)
  run = loop.run(engine.compile(learner, state), loop.Loop(state, Feed().start()), Feed(), [hook])
  anchor = run.state.params
  penalty = run.state.strategy.penalty
  fisher = importance.fisher(TM, anchor, rows, chunk=2)
  scale = sum(float(jnp.sum(f * a * a)) for f, a in zip(jax.tree.leaves(fisher), jax.tree.leaves(anchor)))
  assert abs(float(regularization.quadratic_value(penalty, anchor))) < 1e-5 * scale  # 0 up to rounding
  away = jax.tree.map(lambda p: p + 0.01, anchor)
  want = sum(float(jnp.sum(f * 0.01**2)) for f in jax.tree.leaves(fisher))
  got = float(regularization.quadratic_value(penalty, away))
  assert want > 0 and got == pytest.approx(want, rel=2e-2)


def test_the_bring_your_own_model_example_in_the_docs_runs():
  doc = (pathlib.Path(__file__).parents[2] / "docs" / "continual_learning.md").read_text()
  code = doc.split("### Bring your own model")[1].split("```python")[1].split("```")[0]
  apply = lambda p, x: x @ p["w"]  # noqa: E731
  init = lambda key: {"w": jax.random.normal(key, (8, 1))}  # noqa: E731
  space = {"apply": apply, "init": init}
  exec(code, space)  # builds `strategy`, DER++ on the user's model
  strategy, rows = space["strategy"], space["Rows"]
  batch = rows(jax.random.normal(jax.random.key(2), (16, 8)), jax.random.normal(jax.random.key(3), (16,)))
  params = init(jax.random.key(0))
  opt = optax.sgd(0.1)
  opt_state, sstate = opt.init(params), strategy.init(params, jax.random.key(1))
  hp = {k: jnp.float32(v) for k, v in strategy.hparams.items()}
  for i in range(3):
    params, opt_state, sstate, aux, _ = strategies.strategy_step(
      strategy, opt, params, opt_state, sstate, hp, batch, jax.random.split(jax.random.key(i), 3)
    )
  assert int(sstate.seen) == 48 and np.isfinite(float(aux["ce"]))


@pytest.mark.slow
def test_lm_strategies_experiment_stops_and_resumes_to_the_same_table(tmp_path, monkeypatch):
  """A run stopped (as by SIGTERM) after its first phase resumes to the uninterrupted run's numbers."""
  module = catalog.load(str(pathlib.Path(__file__).resolve().parents[2] / "experiments" / "lm_strategies.py"))
  cfg = dataclasses.replace(
    module.get_config(),
    strategies=("ewc",),
    phase_tokens=2048,
    seeds=(0, 1),
    task_rows=16,
    d_model=32,
    n_layers=1,
    n_heads=2,
    steps=4,
    checkpoint_every=1,
  )
  whole = module.run(cfg, tmp_path / "whole", resume=False, progress=False)

  def stop_after_phase_one(self, run):
    if run.position[:2] == [1, 0]:
      loop.STOP.set()  # what the CLI's signal handler does

  monkeypatch.setattr(module.Prequential, "after_block", stop_after_phase_one)
  with pytest.raises(KeyboardInterrupt):
    module.run(cfg, tmp_path / "cut", resume=False, progress=False)
  loop.STOP.clear()
  monkeypatch.undo()
  resumed = module.run(cfg, tmp_path / "cut", resume=True, progress=False)
  assert resumed["strategies"]["ewc"]["matrix"] == whole["strategies"]["ewc"]["matrix"]
  assert resumed["strategies"]["ewc"]["tokens"] == whole["strategies"]["ewc"]["tokens"]
