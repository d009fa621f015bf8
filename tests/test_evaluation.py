"""Scoring with fixed parameters: steps read with a carried memory equal one long read."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from contlearn.config import ModelConfig
from contlearn.errors import ConfigError
from contlearn.evaluation import score, segments
from contlearn.mixer_configs import with_known_fields
from contlearn.models import byte_lm
from contlearn.models.sizing import param_count
from contlearn.models.variants import select


def test_segments_overlap_by_one_target():
  tokens = np.arange(2 * 7).reshape(2, 7)
  s = segments(tokens, 3)
  assert s.shape == (2, 2, 4)
  np.testing.assert_array_equal(s[0, 1], [7, 8, 9, 10])
  np.testing.assert_array_equal(s[1, 0], [3, 4, 5, 6])
  with pytest.raises(ValueError, match="not n \\* 4 \\+ 1"):
    segments(tokens, 4)


@pytest.mark.parametrize("mixer", ["swa", pytest.param("gated_deltanet", marks=pytest.mark.slow)])
def test_score_by_steps_equals_one_read_of_the_whole_sequence(mixer):
  cfg = ModelConfig(mixer=with_known_fields(mixer, window=32, chunk=8), d_model=32, n_layers=2, n_heads=2)
  model = byte_lm(cfg)
  params = model.init_params(jax.random.PRNGKey(0))
  tokens = np.asarray(jax.random.randint(jax.random.PRNGKey(1), (2, 3 * 8 + 1), 0, 256), np.int32)
  steps = segments(tokens, 8)
  mask = np.ones(steps[:, :, 1:].shape, bool)
  mask[2, 1, 5:] = False  # a ragged end in lane 1
  got = score(model, params, jnp.asarray(steps), jnp.asarray(mask))
  logits, _ = model.apply(params, model.init_memory(2), tokens[:, :-1], np.ones((2, 24), bool))
  nll = optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:])
  hit = np.asarray(jnp.argmax(logits, -1) == tokens[:, 1:])
  want_nll = np.transpose(np.asarray(nll).reshape(2, 3, 8), (1, 0, 2))
  want_hit = np.transpose(hit.reshape(2, 3, 8), (1, 0, 2))
  np.testing.assert_allclose(np.asarray(got.nll), np.where(mask, want_nll, 0.0), rtol=2e-4, atol=2e-4)
  np.testing.assert_array_equal(np.asarray(got.hit), want_hit & mask)


def test_variants_by_label_or_mixer_and_skip_unknown_mixers():
  table = {"transformer": {"mixer": "swa", "mlp_ratio": 5}, "future": {"mixer": "not_yet_built"}}
  notes = []
  chosen = select(table, ["transformer", "future", "titans"], ModelConfig(d_model=32), note=notes.append)
  assert list(chosen) == ["transformer", "titans"]
  assert chosen["transformer"].mlp_ratio == 5 and chosen["titans"].mixer.name == "titans"
  assert notes == ["skipping future: mixer 'not_yet_built' is not in this version of contlearn"]
  with pytest.raises(ConfigError, match="unknown model 'nope'"):
    select(table, ["nope"], ModelConfig())


def test_a_mixer_name_keeps_the_base_settings_of_that_mixer():
  """`--set base.mixer=titans --set base.mixer.chunk=8 --set models=titans` runs chunk 8, not the default."""
  from contlearn.models.titans import TitansConfig

  base = ModelConfig(d_model=32, mixer=TitansConfig(chunk=8), cms_periods=(1, 4))
  chosen = select({}, ["titans", "swa"], base)
  assert chosen["titans"] == base
  assert chosen["swa"].mixer.name == "swa" and chosen["swa"].cms_periods == (1, 4)
  assert TitansConfig().chunk != 8


def test_a_label_shadowing_the_base_mixers_settings_is_refused():
  """A label named as its mixer runs its table entry; base settings of that mixer would be lost, so they are refused."""
  from contlearn.models.titans import TitansConfig

  table = {"titans": {"mixer": TitansConfig(expansion=2)}, "deltanet": {"mixer": "deltanet"}}
  with pytest.raises(ConfigError, match=r"model 'titans' is a label .* settings \(TitansConfig\(.*chunk=8"):
    select(table, ["titans"], ModelConfig(mixer=TitansConfig(expansion=2, chunk=8)))
  same = ModelConfig(mixer=TitansConfig(expansion=2))  # the base holds the label's own settings: nothing is lost
  assert select(table, ["titans"], same)["titans"] == same
  assert select(table, ["deltanet"], ModelConfig(mixer="deltanet"))["deltanet"].mixer.name == "deltanet"
  assert select(table, ["titans"], ModelConfig())["titans"].mixer == TitansConfig(expansion=2)  # another base mixer


def test_base_runs_the_base_as_set():
  """`--set base.mixer=titans --set base.mixer.chunk=8 --set models=base` runs chunk 8 where "titans" is a label."""
  from contlearn.models.titans import TitansConfig

  table = {"titans": {"mixer": TitansConfig(expansion=2)}, "wide": {"d_model": 128}}
  base = ModelConfig(d_model=32, mixer=TitansConfig(expansion=2, chunk=8))
  chosen = select(table, ["base", "wide"], base)
  assert chosen["base"] == base and chosen["wide"] == dataclasses.replace(base, d_model=128)
  with pytest.raises(ConfigError, match="ask for models=base"):
    select(table, ["titans"], base)
  with pytest.raises(ConfigError, match="may not be 'base'"):
    select({"base": {}}, ["base"], base)


def test_param_count_counts_the_initialised_parameters():
  cfg = ModelConfig(mixer="swa", d_model=32, n_layers=1, n_heads=2, mlp_ratio=4)
  params = byte_lm(cfg).init_params(jax.random.PRNGKey(0))
  n = sum(x.size for x in jax.tree.leaves(params))
  # embed 256x32, head 32x256, final norm 32; block: norm 32, wqkv 32x96, wo 32x32, MLP 32x128 + 128x32 (+ its norm)
  assert param_count(cfg) == n and n > 2 * 256 * 32 + 32 * 96 + 32 * 32 + 2 * 32 * 128
