"""The compiled chunk: no recompiles, chunking-invariant, device-count-invariant."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from compiles import count_programs
from tiny import tiny_config, with_fields

from contlearn.driver import train
from contlearn.engine import Learner, compile, place_state, place_xs
from contlearn.engine import init as engine_init
from contlearn.errors import ConfigError
from contlearn.learner import build_learner
from contlearn.sharding import make_mesh
from contlearn.state import new_state
from contlearn.stream import DocumentLanes, split_bytes


def _run_chunks(cfg, steps_per_chunk, n_chunks, corpus):
  mesh = make_mesh()
  learner = build_learner(cfg)
  state = place_state(learner.init(jax.random.PRNGKey(0)), mesh)
  run = compile(learner, state, mesh=mesh)
  stream = DocumentLanes(
    split_bytes(corpus, cfg.data.batch), steps=steps_per_chunk, batch=cfg.data.batch, seq=cfg.data.seq
  )
  position, losses = stream.start(), []
  for _ in range(n_chunks):
    chunk, position = stream.next(position)
    state, metrics = run(state, place_xs(chunk, mesh))
    losses.append(np.asarray(metrics.nll))
  return state, np.concatenate(losses), run


CORPUS = b"".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n".encode() for i in range(400))


def test_second_chunk_does_not_recompile():
  cfg = tiny_config(mixer="linear_attention", cms_periods=(1, 2))
  mesh = make_mesh()
  learner = build_learner(cfg)
  state = place_state(learner.init(jax.random.PRNGKey(0)), mesh)
  run = compile(learner, state, mesh=mesh)
  stream = DocumentLanes(split_bytes(CORPUS, 8), steps=4, batch=8, seq=16)
  chunk, position = stream.next(stream.start())
  state, _ = run(state, place_xs(chunk, mesh))
  with count_programs() as programs:
    for _ in range(3):
      chunk, position = stream.next(position)
      state, metrics = run(state, place_xs(chunk, mesh))
    jax.block_until_ready(metrics)
  assert programs.count == 0


def test_one_long_chunk_equals_many_short_chunks():
  cfg = tiny_config(mixer="swa", cms_periods=(1, 3))
  long_state, long_losses, _ = _run_chunks(cfg, steps_per_chunk=12, n_chunks=1, corpus=CORPUS)
  short_state, short_losses, _ = _run_chunks(cfg, steps_per_chunk=3, n_chunks=4, corpus=CORPUS)
  np.testing.assert_allclose(long_losses, short_losses, rtol=1e-5)
  close = lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
  jax.tree.map(close, long_state.params, short_state.params)
  jax.tree.map(close, long_state.memory, short_state.memory)


def _losses(out):
  return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_run_twice_as_long_compiles_nothing_more(tmp_path):
  cfg = tiny_config()
  chunk_tokens = cfg.data.steps * cfg.data.batch * cfg.data.seq
  counts = []
  for n_chunks in (1, 2, 4):  # the first run also compiles helpers every run shares
    run_cfg = with_fields(cfg, train=dict(tokens=n_chunks * chunk_tokens, checkpoint_every=100))
    with count_programs() as programs:
      summary = train(run_cfg, tmp_path / f"run{n_chunks}", progress=False)
    assert summary["chunks"] == n_chunks
    counts.append(programs.count)
  assert counts[1] == counts[2]


@pytest.mark.slow  # make test compares 1 x 4 devices with 2 processes x 2 (tests/multihost)
def test_one_and_eight_devices_give_the_same_losses(tmp_path):
  assert len(jax.devices()) == 8
  cfg = with_fields(
    tiny_config(mixer="linear_attention", cms_periods=(1, 2)), train=dict(tokens=4 * 512, checkpoint_every=100)
  )
  train(cfg, tmp_path / "one", devices=jax.devices()[:1], progress=False)
  summary = train(cfg, tmp_path / "eight", progress=False)
  assert summary["devices"] == 8
  one, eight = _losses(tmp_path / "one"), _losses(tmp_path / "eight")
  assert len(one) == len(eight) == 4
  np.testing.assert_allclose(one, eight, rtol=1e-5)
  assert one[-1] < one[0]  # and it learns


def test_a_rule_whose_state_repeats_an_array_still_runs_donated():
  # An optax rule may put one array in two places of its state; `place_state`
  # gives every leaf its own buffer, so the donated carry never holds one twice.
  import optax

  from contlearn.learner import sequence_learner
  from contlearn.models import byte_lm

  def init(params):
    zeros = jax.numpy.zeros(())
    return (zeros, zeros)

  repeats = optax.GradientTransformation(init, lambda g, s, p=None: (g, s))
  cfg = tiny_config(mixer="linear_attention")
  learner = sequence_learner(byte_lm(cfg.model), optax.chain(repeats, optax.adam(1e-3)), 8)
  mesh = make_mesh()
  state = place_state(learner.init(jax.random.PRNGKey(0)), mesh)
  leaves = jax.tree.leaves(state)
  assert len({id(x) for x in leaves}) == len(leaves)
  run = compile(learner, state, mesh=mesh)
  stream = DocumentLanes(split_bytes(CORPUS, 8), steps=2, batch=8, seq=16)
  position = stream.start()
  for _ in range(2):
    chunk, position = stream.next(position)
    state, metrics = run(state, place_xs(chunk, mesh))
  assert np.all(np.isfinite(np.asarray(metrics.nll)))


def test_lanes_read_their_own_env_and_equal_separate_runs():
  """With `lane_env`, lane i reads env[i] (its own data) and ends where a run of that lane alone ends."""

  def init(key):
    return new_state({"w": jax.random.normal(key, ())}, (), key)

  def step(state, x, env):  # a gradient step towards the lane's own target, scaled by the shared x
    w = state.params["w"] - 0.1 * x * (state.params["w"] - env["target"])
    return state.replace(params={"w": w}, step=state.step + 1), w

  learner = Learner(init, step)
  keys = jnp.stack([jax.random.key(i) for i in range(3)])
  targets = {"target": jnp.array([1.0, -2.0, 5.0])}
  xs = jnp.linspace(0.5, 1.5, 6)
  run = compile(learner, engine_init(learner, keys, lanes=True), lanes=True, lane_env=True)
  state, ws = run(engine_init(learner, keys, lanes=True), xs, targets)
  assert ws.shape == (3, 6)
  for i in range(3):
    alone = compile(learner, init(keys[i]))
    s, w = alone(init(keys[i]), xs, {"target": targets["target"][i]})
    np.testing.assert_allclose(ws[i], w, rtol=1e-6)
    np.testing.assert_allclose(state.params["w"][i], s.params["w"], rtol=1e-6)
  with pytest.raises(ConfigError, match="lane_env needs lanes"):
    compile(learner, init(keys[0]), lane_env=True)


def test_init_with_a_mesh_traces_with_a_key_made_inside():
  # A resume takes the state's shapes from `jax.eval_shape(init_state)`; a key made inside the
  # initialiser is then traced, and placing it on the mesh must not read its value.
  learner = build_learner(tiny_config())
  mesh = make_mesh()
  make = lambda: engine_init(learner, jax.random.PRNGKey(3), mesh=mesh)  # noqa: E731
  shapes = jax.eval_shape(make)
  state = make()
  assert jax.tree.map(lambda a: (a.shape, a.dtype), shapes) == jax.tree.map(lambda a: (a.shape, a.dtype), state)
