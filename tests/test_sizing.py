"""Parameter counts and width matching."""

import dataclasses

import jax
import numpy as np
import pytest

from contlearn.config import ModelConfig
from contlearn.models import byte_lm
from contlearn.models.sizing import matched_width, param_count


def test_param_count_is_the_initialised_size():
  cfg = ModelConfig(mixer="titans", d_model=32, n_heads=2, cms_periods=(1, 4))
  params = byte_lm(cfg).init_params(jax.random.PRNGKey(0))
  assert param_count(cfg) == sum(np.size(x) for x in jax.tree.leaves(params))


def test_matched_width_is_the_closest_width():
  target = param_count(ModelConfig(mixer="swa", d_model=64, n_heads=2))
  cfg = matched_width(ModelConfig(mixer="gated_deltanet", n_heads=2), target)
  assert cfg.d_model % 4 == 0
  best = abs(param_count(cfg) - target)
  for w in (cfg.d_model - 4, cfg.d_model + 4):
    assert best <= abs(param_count(dataclasses.replace(cfg, d_model=w)) - target)
  assert matched_width(ModelConfig(mixer="swa", n_heads=2), target).d_model == 64


@pytest.mark.parametrize("experiment", ["nl_lm_comparison", "ttt_ladder", "titans_ablations"])
def test_lm_comparison_models_have_equal_size(experiment):
  from contlearn import catalog

  configs = catalog.load(experiment).get_config()
  target = param_count(dataclasses.replace(next(iter(configs.values())).model, mixer="swa", d_model=128))
  expected = {
    "nl_lm_comparison": {"transformer", "gated_deltanet", "ttt_linear", "titans_lmm", "titans_mag", "hope"},
    "ttt_ladder": {"transformer", "linear_attention", "mamba2", "deltanet", "ttt_linear", "ttt_mlp"},
    "titans_ablations": {
      "titans_lmm",
      "titans_linear",
      "titans_no_momentum",
      "titans_no_decay",
      "titans_no_conv",
      "titans_mac",
      "titans_mag",
      "titans_mal",
    },
  }[experiment]
  assert expected <= set(configs)
  for name, cfg in configs.items():
    assert abs(param_count(cfg.model) - target) <= 0.08 * target, name
    assert cfg.data.seq % byte_lm(cfg.model).step_multiple == 0, name
    assert cfg.train.seeds == (0, 1, 2), name
