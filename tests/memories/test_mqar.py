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
# A small MQAR learner: one linear-attention layer of width 16, up to 4 pairs from 16 keys, batches of 4,
# 2 seeds x 2 rates.
TINY = dataclasses.replace(
  EXP.get_config(),
  d_model=16,
  n_layers=1,
  max_pairs=4,
  n_keys=16,
  n_values=16,
  batch=4,
  steps=8,
  block=2,
  eval_batch=32,
  lrs=(1e-3, 3e-2),
  seeds=(0, 1),
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
    ["seeds="],
    ["seeds=0,1,0"],
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


def test_the_single_seed_field_is_gone():
  with pytest.raises(ConfigError, match="seed=1: unknown key; did you mean seeds"):
    apply_overrides(EXP.get_config(), ["seed=1"])
  assert apply_overrides(EXP.get_config(), ["seeds=3"]).seeds == (3,)


def test_defaults_are_the_setting_of_the_512_key_table():
  """docs/memories.md's 3-seed table at 512 keys: linear q/k features, beta from 0.05, the rate 3e-3 alone."""
  cfg = EXP.get_config()
  assert (cfg.n_keys, cfg.n_values, cfg.mem_qk_act, cfg.mem_lr_init) == (512, 512, "identity", 0.05)
  assert cfg.lrs == (3e-3,) and cfg.seeds == (0, 1, 2)


def test_small_sets_only_fields_left_at_their_defaults():
  cfg = EXP.resolved(apply_overrides(EXP.get_config(), ["small=true", "models=linear_attention", "steps=40"]))
  assert cfg.models == ("linear_attention",) and cfg.steps == 40 and cfg.max_pairs == 4 and cfg.lrs == (3e-3,)
  assert (cfg.n_keys, cfg.n_values, cfg.seeds) == (64, 64, (0, 1, 2))
  assert EXP.eval_pairs(cfg) == (2, 4) and EXP.eval_pairs(EXP.get_config()) == (2, 4, 8, 16)


def test_lanes_are_seeds_by_rates():
  """Lane (s, r) sits at s * len(lrs) + r, starts from PRNGKey(seeds[s]) and learns at lrs[r]."""
  cfg = EXP.resolved(dataclasses.replace(TINY, seeds=(0, 5, 7), lrs=(1e-3, 3e-3)))
  keys = np.asarray(EXP.lane_keys(cfg))
  assert keys.shape == (6, 2)
  for lane, seed in enumerate([0, 0, 5, 5, 7, 7]):
    np.testing.assert_array_equal(keys[lane], np.asarray(jax.random.PRNGKey(seed)))
  _, _, init_state = EXP.learner_and_state(cfg, EXP.ROWS["linear_attention"])
  state = init_state()
  np.testing.assert_allclose(state.opt_state.hyperparams["learning_rate"], [1e-3, 3e-3] * 3)
  for leaf in jax.tree.leaves(state.params):
    leaf = np.asarray(leaf)
    assert leaf.shape[0] == 6
    np.testing.assert_array_equal(leaf[0], leaf[1])  # one seed, one start at both rates
  starts = [np.concatenate([np.asarray(a[lane]).ravel() for a in jax.tree.leaves(state.params)]) for lane in (0, 2, 4)]
  assert all(not np.allclose(starts[a], starts[b]) for a, b in [(0, 1), (0, 2), (1, 2)])  # seeds start apart


def test_each_seed_keeps_its_best_rate_on_validation():
  """Seed 0's best validation rate is the second, seed 1's the first; the row reports each seed at its own."""
  cfg = dataclasses.replace(TINY, seeds=(3, 4), lrs=(1e-3, 3e-3))
  val = np.array([0.5, 0.9, 0.8, 0.7])  # lanes (3, 1e-3), (3, 3e-3), (4, 1e-3), (4, 3e-3)
  test = {2: np.array([0.1, 0.95, 0.85, 0.2]), 4: np.array([0.0, 0.75, 0.55, 0.3])}
  loss = np.array([3.0, 0.4, 0.6, 2.0])
  row = EXP.row_result(cfg, "tiny", val, test, loss)
  assert row["seeds"] == [3, 4] and row["lr"] == [3e-3, 1e-3]
  assert row["n=2"] == [0.95, 0.85] and row["n=4"] == [0.75, 0.55] and row["loss"] == [0.4, 0.6]
  assert row["mean"] == pytest.approx({"n=2": 0.9, "n=4": 0.65, "loss": 0.5})
  assert row["std"] == pytest.approx({"n=2": 0.1 / np.sqrt(2), "n=4": 0.2 / np.sqrt(2), "loss": 0.2 / np.sqrt(2)})
  assert [(lane["seed"], lane["lr"], lane["val"], lane["n=4"]) for lane in row["lanes"]] == [
    (3, 1e-3, 0.5, 0.0),
    (3, 3e-3, 0.9, 0.75),
    (4, 1e-3, 0.8, 0.55),
    (4, 3e-3, 0.7, 0.3),
  ]
  alone = EXP.row_result(
    dataclasses.replace(cfg, seeds=(4,)), "tiny", val[2:], {n: a[2:] for n, a in test.items()}, loss[2:]
  )
  assert alone["lr"] == [1e-3] and alone["n=2"] == [0.85] and alone["std"] == {"n=2": None, "n=4": None, "loss": None}


def test_a_diverged_lane_is_never_kept_and_a_seed_without_a_finite_rate_is_left_out():
  """Lane (3, 3e-3) diverged: seed 3 keeps 1e-3 though its validation score is lower; seed 4 lost both."""
  cfg = dataclasses.replace(TINY, seeds=(3, 4), lrs=(1e-3, 3e-3))
  val = np.array([0.5, 0.9, 0.8, 0.7])
  test = {2: np.array([0.1, 0.95, 0.85, 0.2])}
  loss = np.array([3.0, np.nan, np.nan, np.nan])
  row = EXP.row_result(cfg, "tiny", val, test, loss, retired={1: 7, 2: 3, 3: 5})
  assert row["lr"] == [1e-3, None] and row["n=2"] == [0.1, None] and row["loss"] == [3.0, None]
  assert row["trained"] == 1 and row["mean"] == {"n=2": 0.1, "loss": 3.0} and row["std"] == {"n=2": None, "loss": None}
  assert [(lane["diverged_at"], lane["loss"]) for lane in row["lanes"]] == [
    (None, 3.0),
    (7, None),
    (3, None),
    (5, None),
  ]
  json.dumps(row, allow_nan=False)  # standard JSON: no NaN
  row["seconds"] = 1.0
  lines = EXP.report({"config": {"seeds": [3, 4]}, "eval_pairs": [2], "rows": [row], "seconds": 1.0}).splitlines()
  assert "| tiny | 0.001, diverged | 0.100 | 3.000 | 1 |" in lines
  assert "tiny: seed 3 at rate 0.003 diverged in chunk 7" in lines
  assert "tiny: cells over 1 of 2 seeds (the others diverged at every rate)" in lines
  lost = EXP.row_result(dataclasses.replace(cfg, seeds=(4,)), "tiny", val[2:], {2: test[2][2:]}, loss[2:], {0: 3, 1: 5})
  assert lost["trained"] == 0 and lost["mean"] == {"n=2": None, "loss": None}


@pytest.mark.slow  # two small runs: about 20 s of CPU
def test_a_rate_that_diverges_is_retired_and_the_row_keeps_the_other(tmp_path):
  cfg = dataclasses.replace(TINY, seeds=(0,), lrs=(3e-2, 1e30))
  row = EXP.run(cfg, tmp_path, progress=False)["rows"][0]
  assert row["lr"] == [3e-2] and row["trained"] == 1
  assert row["lanes"][0]["diverged_at"] is None and row["lanes"][1]["diverged_at"] is not None
  alone = EXP.run(dataclasses.replace(cfg, lrs=(3e-2,)), tmp_path / "alone", progress=False)["rows"][0]
  assert row["n=4"] == alone["n=4"] and row["loss"] == pytest.approx(alone["loss"], rel=1e-6)


def test_report_gives_mean_and_sample_std_over_seeds():
  row = {"memory": "deltanet", "lr": [0.003, 0.001], "seconds": 12.4}
  row["mean"] = {"n=2": 0.9, "n=4": 0.65, "loss": 0.5}
  row["std"] = {"n=2": 0.0707, "n=4": 0.1414, "loss": 0.1414}
  alone = {"memory": "swa", "lr": [0.003], "seconds": 3.0}
  alone["mean"], alone["std"] = {"n=2": 1.0, "n=4": 0.25, "loss": 2.0}, {"n=2": None, "n=4": None, "loss": None}
  result = {"config": {"seeds": [3, 4]}, "eval_pairs": [2, 4], "rows": [row, alone], "seconds": 15.4}
  lines = EXP.report(result).splitlines()
  assert lines[0].startswith("seeds 3, 4: mean ± sample standard deviation")
  assert "| memory | kept lr per seed | n=2 | n=4 | loss | s |" in lines
  assert "| deltanet | 0.003, 0.001 | 0.900 ± 0.071 | 0.650 ± 0.141 | 0.500 ± 0.141 | 12 |" in lines
  assert "| swa | 0.003 | 1.000 | 0.250 | 2.000 | 3 |" in lines


def _reference_lanes(cfg, model, params, seed, lrs, steps):
  """The experiment's former training loop, each rate alone on seed `seed`'s batches: a Python loop of
  jitted AdamW steps on the answer-weighted cross-entropy, every token read, the update scaled by -lr."""
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
      p, state, loss = step(p, state, jax.random.fold_in(jax.random.PRNGKey(seed), i), jnp.float32(lr))
      losses.append(float(loss))
    trained.append((p, losses))
  return trained


@pytest.mark.slow
def test_each_lane_learns_as_its_seed_and_rate_alone_in_the_former_loop():
  """Lane (s, r) of the engine's vmapped run equals rate r trained alone by the former loop on seed s's
  batches, from the same start."""
  cfg = EXP.resolved(TINY)
  model, learner, init_state = EXP.learner_and_state(cfg, EXP.ROWS["linear_attention"])
  state = init_state()
  starts = jax.tree.map(np.asarray, state.params)  # the run donates the state
  run = engine.compile(learner, state, lanes=True, lane_env=True)
  state, metrics = run(state, synthetic.step_indices(0, cfg.steps), EXP.lane_keys(cfg))
  loss = np.asarray(metrics.nll) / np.asarray(metrics.count)  # [lanes, steps]
  for s, seed in enumerate(cfg.seeds):
    first = s * len(cfg.lrs)
    start = jax.tree.map(lambda a: a[first], starts)
    for r, (want, want_loss) in enumerate(_reference_lanes(cfg, model, start, seed, cfg.lrs, cfg.steps)):
      np.testing.assert_allclose(loss[first + r], want_loss, rtol=1e-5)
      for got, ref in zip(jax.tree.leaves(state.params), jax.tree.leaves(want)):
        np.testing.assert_allclose(np.asarray(got)[first + r], np.asarray(ref), rtol=1e-4, atol=1e-6)
  moved = [np.abs(np.asarray(a[1]) - np.asarray(a[0])).max() for a in jax.tree.leaves(state.params)]
  assert max(moved) > 1e-3  # the two rates did train apart
  assert np.abs(loss[0] - loss[2]).max() > 1e-3  # the two seeds read other batches


@pytest.mark.slow  # three small runs, each compiled and checkpointed: about a minute of CPU
def test_a_seeds_lanes_equal_a_run_of_that_seed_alone(tmp_path):
  """Lane (s, r) of a run with seeds (0, 1) is the run with seeds (s,) alone: loss and accuracies within 1e-6."""
  both = EXP.run(TINY, tmp_path / "both", progress=False)["rows"][0]
  for i, seed in enumerate(TINY.seeds):
    alone = EXP.run(dataclasses.replace(TINY, seeds=(seed,)), tmp_path / f"alone{seed}", progress=False)["rows"][0]
    lanes = [lane for lane in both["lanes"] if lane["seed"] == seed]
    assert len(lanes) == len(alone["lanes"]) == len(TINY.lrs)
    for got, want in zip(lanes, alone["lanes"]):
      assert got.keys() == want.keys() and got["lr"] == want["lr"]
      for k in want:  # "diverged_at" is None in both (no lane diverges here)
        assert got[k] == (None if want[k] is None else pytest.approx(want[k], rel=1e-6, abs=1e-6)), k
    assert alone["lr"] == [both["lr"][i]] and alone["n=4"] == [both["n=4"][i]]
  assert both["lanes"][0]["loss"] != pytest.approx(both["lanes"][2]["loss"], rel=1e-3)  # the seeds differ


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
      env=EXP.lane_keys(cfg),
      lanes=True,
      lane_env=True,
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
    fit_run(
      learner,
      init_state,
      feed,
      tmp_path / "cut",
      config={"steps": 9},
      env=EXP.lane_keys(cfg),
      lanes=True,
      lane_env=True,
      resume=True,
    )


@pytest.mark.slow
def test_small_experiment_picks_each_seeds_best_rate(tmp_path):
  """`contlearn run mqar --set small=true --set lrs=0.001,0.003`: every model at every seed and rate; per seed, the
  best validation lane."""
  cfg = apply_overrides(EXP.get_config(), ["small=true", "lrs=0.001,0.003"])
  assert len(cfg.lrs) == 2  # a choice to make
  EXP.run(cfg, tmp_path, resume=False, progress=False)
  result = json.loads((tmp_path / "mqar.json").read_text())
  cfg, rows = result["config"], result["rows"]
  assert [r["memory"] for r in rows] == [EXP.ROWS[m].label for m in cfg["models"]] and len(rows) == 2
  keys = [f"n={n}" for n in result["eval_pairs"]] + ["loss"]
  for row in rows:
    lanes = row["lanes"]
    assert [(lane["seed"], lane["lr"]) for lane in lanes] == [(s, lr) for s in cfg["seeds"] for lr in cfg["lrs"]]
    for i, seed in enumerate(cfg["seeds"]):
      best = max((lane for lane in lanes if lane["seed"] == seed), key=lambda lane: lane["val"])
      assert row["lr"][i] == best["lr"] and all(row[k][i] == best[k] for k in keys)
    for k in keys:
      assert row["mean"][k] == pytest.approx(np.mean(row[k])) and row["std"][k] == pytest.approx(np.std(row[k], ddof=1))
    for lane in lanes:
      assert all(0.0 <= lane[f"n={n}"] <= 1.0 for n in result["eval_pairs"])
      assert lane["loss"] < np.log(mqar.vocab_size(cfg["n_keys"], cfg["n_values"]))  # below a uniform guess
  assert "| swa (equal state) |" in EXP.report(result) and " ± " in EXP.report(result)
