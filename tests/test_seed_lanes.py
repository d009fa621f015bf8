"""Seeds as lanes of a stream run (`train.seeds`): each lane is its seed's run, resumable, summarised with spread."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tiny import tiny_config, with_fields

from contlearn.config import ConfigError, TrainConfig
from contlearn.driver import fit, summary_table, train
from contlearn.engine import Learner
from contlearn.learner import build_learner
from contlearn.stream import build_stream

CHUNK_TOKENS = 4 * 8 * 16  # tiny_config: steps x batch x seq


def _lane_losses(folder):
  return np.array([json.loads(line)["loss_lanes"] for line in (folder / "metrics.jsonl").read_text().splitlines()])


def _losses(folder):
  return np.array([json.loads(line)["loss"] for line in (folder / "metrics.jsonl").read_text().splitlines()])


@pytest.mark.slow
def test_an_interrupted_run_of_seeds_resumes_exactly(tmp_path):
  cfg = with_fields(tiny_config(), train=dict(seeds=(3, 4, 5), checkpoint_every=1))
  whole = train(with_fields(cfg, train=dict(tokens=4 * CHUNK_TOKENS)), tmp_path / "whole", progress=False)
  train(with_fields(cfg, train=dict(tokens=2 * CHUNK_TOKENS)), tmp_path / "split", progress=False)
  longer = with_fields(cfg, train=dict(tokens=4 * CHUNK_TOKENS))
  resumed = train(longer, tmp_path / "split", resume=True, progress=False)
  np.testing.assert_array_equal(_lane_losses(tmp_path / "split"), _lane_losses(tmp_path / "whole"))
  assert resumed["bits_per_byte_all_seeds"] == whole["bits_per_byte_all_seeds"]


def test_repeated_seeds_are_refused_by_name():
  with pytest.raises(ConfigError, match=r"TrainConfig.seeds=\(1, 1\): must be distinct seeds"):
    TrainConfig(seeds=(1, 1))
  with pytest.raises(ConfigError, match="seeds"):
    TrainConfig(seeds=(-1,))


def test_each_lane_is_the_run_of_its_seed_and_a_seed_gone_non_finite_is_retired(tmp_path, capsys):
  """Seeds 0, 1, 2 as lanes, seed 1 poisoned in chunk 3 with on_nonfinite=retire: seed 2's lane is the run
  of seed 2 alone, seed 1 is retired, left out of the mean and named; one run checks both (compiles are slow)."""
  cfg = with_fields(tiny_config(), train=dict(tokens=4 * CHUNK_TOKENS, checkpoint_every=100))
  learner = build_learner(cfg)
  seed_1 = learner.init(jax.random.PRNGKey(1)).key  # the state key of seed 1's lane

  def step(state, x, env=None):  # seed 1's lane turns non-finite at its step 8, in chunk 3
    new, metrics = learner.step(state, x, env)
    bad = (state.step >= 8) & jnp.all(state.key == seed_1)
    params = jax.tree.map(lambda p: jnp.where(bad, jnp.nan, p), new.params)
    return new.replace(params=params), metrics._replace(nll=jnp.where(bad, jnp.nan, metrics.nll))

  settings = dataclasses.replace(cfg.train, seeds=(0, 1, 2), on_nonfinite="retire")
  poisoned = Learner(learner.init, step)
  lanes = fit(poisoned, build_stream(cfg.data), tmp_path / "lanes", settings=settings, progress=False)
  alone = train(with_fields(cfg, train=dict(seed=2)), tmp_path / "seed2", progress=False)
  line = "contlearn: chunk 3: non-finite lane(s) 1; rolled back and retired (1 of 3 lanes retired"
  assert line in capsys.readouterr().err
  assert lanes["chunks"] == 4 and lanes["retired"] == {"1": 3}
  records = [json.loads(line) for line in (tmp_path / "lanes" / "metrics.jsonl").read_text().splitlines()]
  per_lane = np.array([[np.nan if v is None else v for v in r["loss_lanes"]] for r in records])  # [chunks, seeds]
  np.testing.assert_allclose(per_lane[:, 2], _losses(tmp_path / "seed2"), rtol=1e-5)
  assert not np.allclose(per_lane[:, 0], per_lane[:, 2])  # the seeds differ
  assert list(np.isnan(per_lane[:, 1])) == [False, False, True, True]  # null from its chunk on
  np.testing.assert_allclose([r["loss"] for r in records], np.nanmean(per_lane, axis=1), rtol=1e-12)
  assert lanes["params"] == alone["params"]  # one model's count, not the lanes'

  def refuse(constant):
    raise ValueError(f"summary.json holds {constant}")

  assert json.loads((tmp_path / "lanes" / "summary.json").read_text(), parse_constant=refuse) == lanes
  per_seed = lanes["bits_per_byte_all_seeds"]
  assert per_seed[1] is None
  np.testing.assert_allclose(per_seed[2], alone["bits_per_byte_all"], rtol=1e-5)
  for key in ("bits_per_byte_all", "bits_per_byte"):  # the whole run, and its last 10%: over seeds 0 and 2
    kept = [lanes[key + "_seeds"][i] for i in (0, 2)]
    assert lanes[key + "_seeds"][1] is None
    np.testing.assert_allclose(lanes[key], np.mean(kept), rtol=1e-12)
    np.testing.assert_allclose(lanes[key + "_std"], np.std(kept, ddof=1), rtol=1e-12)
  np.testing.assert_allclose(lanes["bits_per_byte_seeds"][2], per_lane[-1, 2] / np.log(2), rtol=1e-12)
  table = summary_table([lanes])
  assert f"{lanes['bits_per_byte_all']:.3f} ± {lanes['bits_per_byte_all_std']:.3f}" in table
  assert "lanes: seed 1 went non-finite in chunk 3 and was retired; left out of its mean." in table


def test_retire_needs_seeds(tmp_path):
  cfg = with_fields(tiny_config(), train=dict(tokens=CHUNK_TOKENS, on_nonfinite="retire"))
  with pytest.raises(ConfigError, match="retire retires seeds: it needs train.seeds"):
    train(cfg, tmp_path / "o", progress=False)
