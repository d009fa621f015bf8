"""The MQAR generator: every scored position asks for the value bound to its key."""

import dataclasses
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from contlearn import catalog, engine, loop, synthetic
from contlearn.errors import ConfigError
from contlearn.memories import mqar
from contlearn.overrides import apply_overrides
from contlearn.run_folder import fit as fit_run

# By path, so the checkout under test is loaded whatever `contlearn.experiments` an install maps.
EXP = catalog.load(str(pathlib.Path(__file__).resolve().parents[2] / "experiments" / "mqar.py"))
# A small MQAR learner: one linear-attention layer of width 16, up to 4 pairs, batches of 4.
TINY = dataclasses.replace(
  EXP.get_config(),
  d_model=16,
  n_layers=1,
  max_pairs=4,
  batch=4,
  steps=8,
  block=2,
  lrs=(1e-3, 3e-2),
  models=("linear_attention",),
)


def test_answers_are_bound_values():
  pairs = jnp.array([1, 3, 5, 5])
  b = mqar.sample(jax.random.PRNGKey(0), 4, pairs, 5, n_keys=8, n_values=6)
  tokens, answer = np.asarray(b.tokens), np.asarray(b.answer)
  assert tokens.shape == (4, 20) and answer.shape == (4, 19)
  for row, n in zip(range(4), [1, 3, 5, 5]):
    seq = tokens[row]
    bound = dict(zip(seq[0 : 2 * n : 2], seq[1 : 2 * n : 2]))
    assert len(bound) == n and all(1 <= k <= 8 for k in bound) and all(9 <= v <= 14 for v in bound.values())
    scored = np.flatnonzero(answer[row])
    assert len(scored) == n and all(2 * n <= p < 4 * n for p in scored)
    assert sorted(seq[p] for p in scored) == sorted(bound)
    assert all(seq[p + 1] == bound[seq[p]] for p in scored)
    assert (seq[4 * n :] == 0).all()


def test_pair_counts_follow_their_mix():
  key = jax.random.PRNGKey(1)
  uni = np.asarray(mqar.pair_counts(key, 40_000, 16, "uniform"))
  log = np.asarray(mqar.pair_counts(key, 40_000, 16, "log_uniform"))
  for counts in (uni, log):
    assert counts.min() == 1 and counts.max() == 16
  np.testing.assert_allclose(np.bincount(uni, minlength=17)[1:] / 40_000, 1 / 16, atol=0.006)
  want = np.log1p(1 / np.arange(1, 17)) / np.log(17)
  np.testing.assert_allclose(np.bincount(log, minlength=17)[1:] / 40_000, want, atol=0.006)
  with pytest.raises(ValueError, match="mix"):
    mqar.pair_counts(key, 4, 16, "zipf")


@pytest.mark.parametrize(
  "setting",
  [
    ["n_keys=8", "max_pairs=16"],
    ["n_values=-1"],
    ["max_pairs=1"],
    ["mem_lr_init=1.5"],
    ["steps=50"],
    ["models=deltanet,lstm"],
  ],
)
def test_experiment_refuses_impossible_sequences(setting, tmp_path):
  key = setting[0].split("=")[0]
  cfg = apply_overrides(EXP.get_config(), setting)
  with pytest.raises(ConfigError, match=key):
    EXP.resolved(cfg)
  with pytest.raises(ConfigError, match=key):  # before anything is built or written
    EXP.run(cfg, tmp_path / "out", resume=False, progress=False)
  assert not (tmp_path / "out").exists()


def test_small_sets_only_fields_left_at_their_defaults():
  cfg = EXP.resolved(apply_overrides(EXP.get_config(), ["small=true", "models=linear_attention", "steps=40"]))
  assert cfg.models == ("linear_attention",) and cfg.steps == 40 and cfg.max_pairs == 4 and cfg.lrs == (1e-3, 3e-3)
  assert EXP.eval_pairs(cfg) == (2, 4) and EXP.eval_pairs(EXP.get_config()) == (2, 4, 8, 16)


def _reference_lanes(cfg, model, params, lrs, steps):
  """The experiment's former training loop, each rate alone: a Python loop of jitted AdamW steps
  on the answer-weighted cross-entropy, every token read, the update scaled by -lr."""
  schedule = optax.warmup_cosine_decay_schedule(0.0, 1.0, max(1, int(cfg.warmup * cfg.steps)), cfg.steps)
  opt = optax.chain(
    optax.clip_by_global_norm(cfg.clip),
    optax.scale_by_adam(),
    optax.add_decayed_weights(cfg.weight_decay),
    optax.scale_by_schedule(schedule),
  )

  def loss_fn(p, batch):
    x = batch.tokens[:, :-1]
    logits, _ = model.apply(p, model.init_memory(x.shape[0]), x, jnp.ones(x.shape, bool))
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch.tokens[:, 1:])
    return jnp.sum(ce * batch.answer) / jnp.maximum(jnp.sum(batch.answer), 1)

  @jax.jit
  def step(p, s, k, lr):
    k_n, k_b = jax.random.split(k)
    pairs = mqar.pair_counts(k_n, cfg.batch, cfg.max_pairs, cfg.mix)
    batch = mqar.sample(k_b, cfg.batch, pairs, cfg.max_pairs, cfg.n_keys, cfg.n_values)
    loss, grads = jax.value_and_grad(loss_fn)(p, batch)
    updates, s = opt.update(grads, s, p)
    return optax.apply_updates(p, jax.tree.map(lambda u: -lr * u, updates)), s, loss

  trained = []
  for lr in lrs:  # each rate alone, from the same start
    p, state, losses = params, opt.init(params), []
    for i in range(steps):
      p, state, loss = step(p, state, jax.random.fold_in(jax.random.PRNGKey(cfg.seed), i), jnp.float32(lr))
      losses.append(float(loss))
    trained.append((p, losses))
  return trained


@pytest.mark.slow
def test_each_rate_lane_learns_as_that_rate_alone_in_the_former_loop():
  """Lane l of the engine's vmapped run equals rate l trained alone by the former loop, from the same start."""
  cfg = EXP.resolved(TINY)
  model, learner, init_state = EXP.learner_and_state(cfg, EXP.ROWS["linear_attention"])
  state = init_state()
  start = jax.tree.map(lambda a: np.asarray(a[0]), state.params)
  run = engine.compile(learner, state, lanes=True)
  state, metrics = run(state, synthetic.step_indices(0, cfg.steps))
  loss = np.asarray(metrics.nll) / np.asarray(metrics.count)  # [lanes, steps]
  for lane, (want, want_loss) in enumerate(_reference_lanes(cfg, model, start, cfg.lrs, cfg.steps)):
    np.testing.assert_allclose(loss[lane], want_loss, rtol=1e-5)
    for got, ref in zip(jax.tree.leaves(state.params), jax.tree.leaves(want)):
      np.testing.assert_allclose(np.asarray(got)[lane], np.asarray(ref), rtol=1e-4, atol=1e-6)
  moved = [np.abs(np.asarray(a[1]) - np.asarray(a[0])).max() for a in jax.tree.leaves(state.params)]
  assert max(moved) > 1e-3  # the two rates did train apart


@pytest.mark.slow  # three compilations and orbax saves: about a minute of CPU
def test_a_resumed_run_ends_where_the_uninterrupted_one_does(tmp_path):
  cfg = EXP.resolved(TINY)
  _, learner, init_state = EXP.learner_and_state(cfg, EXP.ROWS["linear_attention"])
  feed = synthetic.StepFeed(cfg.steps, cfg.block, synthetic.step_indices)

  def fit(out, resume, *hooks):
    log = synthetic.LossLog(out / "metrics.jsonl", 3, "tiny", cfg.steps, progress=False)
    done = fit_run(
      learner,
      init_state,
      feed,
      out,
      config={"steps": cfg.steps},
      hooks=[log, *hooks],
      lanes=True,
      resume=resume,
      checkpoint_every=2,
    )
    return done, log

  whole, whole_log = fit(tmp_path / "whole", False)
  cut, _ = fit(tmp_path / "cut", False, loop.StopAfter(4))
  assert cut.units == 4
  resumed, resumed_log = fit(tmp_path / "cut", True)
  assert resumed.units == whole.units == cfg.steps and resumed.position == cfg.steps
  for a, b in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(whole.state)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  np.testing.assert_array_equal(resumed_log.tail(), whole_log.tail())
  records = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
  assert [r["block"] for r in records] == [1, 2, 3, 4] and [r["step"] for r in records] == [2, 4, 6, 8]
  with pytest.raises(Exception, match="another configuration"):
    fit_run(learner, init_state, feed, tmp_path / "cut", config={"steps": 9}, resume=True)


@pytest.mark.slow
def test_small_experiment_picks_each_models_best_rate(tmp_path):
  """`contlearn run mqar --set small=true`: every model at every rate, the row is the best validation lane."""
  EXP.run(apply_overrides(EXP.get_config(), ["small=true"]), tmp_path, resume=False, progress=False)
  result = json.loads((tmp_path / "mqar.json").read_text())
  cfg, rows = result["config"], result["rows"]
  assert [r["memory"] for r in rows] == [EXP.ROWS[m].label for m in cfg["models"]] and len(rows) == 2
  for row in rows:
    lanes = row["lanes"]
    assert [lane["lr"] for lane in lanes] == cfg["lrs"]
    best = max(lanes, key=lambda lane: lane["val"])
    assert row["lr"] == best["lr"] and all(row[f"n={n}"] == best[f"n={n}"] for n in result["eval_pairs"])
    for lane in lanes:
      assert all(0.0 <= lane[f"n={n}"] <= 1.0 for n in result["eval_pairs"])
      assert lane["loss"] < np.log(mqar.vocab_size(cfg["n_keys"], cfg["n_values"]))  # below a uniform guess
  assert "| swa (equal state) |" in EXP.report(result)
