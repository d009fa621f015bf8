"""Each mixer's own settings: `--set model.mixer=NAME --set model.mixer.FIELD=V`, help, resume, registration."""

import dataclasses

import jax
import jax.numpy as jnp
import pytest

from contlearn.cli import main
from contlearn.config import Config, ModelConfig, to_dict, to_flat_dict
from contlearn.errors import ConfigError
from contlearn.mixer_configs import mixer_config, mixer_names
from contlearn.models import mixer as registry
from contlearn.models.attention import SlidingWindowConfig
from contlearn.models.linear_attention import LinearAttentionConfig
from contlearn.models.titans import TitansConfig, TitansMACConfig
from contlearn.overrides import apply_overrides, apply_overrides_to_models
from tests.test_cli import _error_line, _experiment


def test_the_mixer_then_its_fields():
  cfg = apply_overrides(Config(), ["model.mixer=titans", "model.mixer.chunk=16", "model.mixer.step=chunk"])
  assert cfg.model.mixer == TitansConfig(chunk=16, step="chunk")
  assert cfg.model.mixer.name == "titans" and cfg.model.mixer.depth == 2
  # Choosing a mixer again restores its defaults.
  assert apply_overrides(cfg, ["model.mixer=titans"]).model.mixer == TitansConfig()


def test_a_mixer_name_becomes_its_default_config():
  assert ModelConfig(mixer="titans").mixer == TitansConfig()
  assert dataclasses.replace(ModelConfig(mixer="titans"), mixer="swa").mixer == SlidingWindowConfig(window=64)
  assert ModelConfig().mixer == LinearAttentionConfig(decay="multiscale")
  # Same fields, other mixer: the configs differ, and so does the name.
  mag, mal = ModelConfig(mixer="titans_mag").mixer, ModelConfig(mixer="titans_mal").mixer
  assert to_dict(mag) == {**to_dict(mal), "name": "titans_mag"} and mag != mal


def test_an_unknown_mixer_is_one_line_with_the_choices():
  with pytest.raises(ConfigError) as e:
    apply_overrides(Config(), ["model.mixer=titan"])
  message = str(e.value)
  assert message.startswith("model.mixer='titan' is not a known mixer; did you mean titans? choose one of deltanet,")
  assert "\n" not in message and "swa" in message


def test_a_field_the_mixer_lacks_names_the_mixers_that_have_it():
  with pytest.raises(ConfigError) as e:
    apply_overrides(Config(), ["model.mixer=swa", "model.mixer.chunk=16"])
  message = str(e.value)
  assert message.startswith(
    "--set model.mixer.chunk=16: mixer 'swa' has no field chunk (its fields: window, persistent_tokens); "
    "chunk is a field of deltanet, gated_deltanet, linear_attention,"
  )
  assert "titans_mac" in message and message.endswith(
    "set the mixer first (--set model.mixer=deltanet before --set model.mixer.chunk=...)"
  )
  assert "\n" not in message
  with pytest.raises(
    ConfigError, match=r"has no field chunck .*did you mean model.mixer.chunk\? no mixer has a field chunck"
  ):
    apply_overrides(Config(), ["model.mixer.chunck=16"])
  with pytest.raises(ConfigError, match=r"mixer_config\('swa', depth=...\): mixer 'swa' has no field depth"):
    mixer_config("swa", depth=3)


@pytest.mark.parametrize("field", ["chunk", "depth"])  # the default mixer has a chunk, not a depth
def test_a_mixer_field_before_its_mixer_is_refused(field):
  with pytest.raises(ConfigError) as e:
    apply_overrides(Config(), [f"model.mixer.{field}=3", "model.mixer=titans"])
  assert str(e.value) == (
    f"--set model.mixer=titans after --set model.mixer.{field}=3 would restore the defaults of model.mixer "
    "and lose that setting; set model.mixer first"
  )


def test_mixer_fields_are_checked_when_set():
  with pytest.raises(ConfigError, match=r"^--set model.mixer.lr_init=1.5: must be a number strictly between 0 and 1$"):
    apply_overrides(Config(), ["model.mixer=deltanet", "model.mixer.lr_init=1.5"])
  with pytest.raises(ConfigError, match=r"^--set model.mixer.decay=fast: must be one of none, multiscale$"):
    apply_overrides(Config(), ["model.mixer.decay=fast"])
  with pytest.raises(ConfigError, match=r"TitansMACConfig.persistent_tokens=-1: must be an integer >= 0"):
    TitansMACConfig(persistent_tokens=-1)


def test_a_mixer_field_set_for_several_models_goes_to_those_that_have_it():
  models = {"attention": Config(model=ModelConfig(mixer="swa")), "memory": Config()}
  got = apply_overrides_to_models(models, ["model.mixer.chunk=8", "model.mixer.window=16", "model.d_model=64"])
  assert got["attention"].model.mixer == SlidingWindowConfig(window=16)
  assert got["memory"].model.mixer == LinearAttentionConfig(chunk=8)
  assert got["attention"].model.d_model == got["memory"].model.d_model == 64
  with pytest.raises(ConfigError, match="mixer 'swa' has no field depth"):
    apply_overrides_to_models(models, ["model.mixer.depth=3"])


class Recorder:
  """A mixer's config that records which of its fields are read."""

  def __init__(self, cfg):
    self._cfg, self._read = cfg, set()

  def __getattr__(self, name):
    if name in {f.name for f in dataclasses.fields(self._cfg)}:
      self._read.add(name)
    return getattr(self._cfg, name)


@pytest.mark.parametrize("name", mixer_names())
def test_each_mixer_reads_every_field_of_its_config(name):
  """Building, initialising and applying a mixer (shapes only) reads each field of its config, and no other."""
  model = ModelConfig(mixer=name, d_model=16, n_heads=2, n_layers=1)
  cfg = Recorder(model.mixer)
  mixer = registry.registered(name).factory(cfg, model)
  t = max(mixer.step_multiple, 4)
  params = jax.eval_shape(mixer.init_params, jax.random.PRNGKey(0))
  state = jax.eval_shape(lambda: mixer.init_state(2))
  x = jax.ShapeDtypeStruct((2, t, 16), jnp.float32)
  jax.eval_shape(mixer.apply, params, state, x, jax.ShapeDtypeStruct((2, t), jnp.bool_))
  assert cfg._read == {f.name for f in dataclasses.fields(model.mixer)}


def test_the_saved_configuration_names_the_mixer_and_its_fields():
  flat = to_flat_dict(apply_overrides(Config(), ["model.mixer=titans", "model.mixer.chunk=16"]))
  assert flat["model.mixer.name"] == "titans" and flat["model.mixer.chunk"] == 16 and flat["model.d_model"] == 128
  assert "model.mixer" not in flat and "model.mixer.window" not in flat


@pytest.mark.slow
def test_resume_with_another_mixer_field_or_mixer_is_refused(tmp_path, capsys):
  out, exp = tmp_path / "o", _experiment(tmp_path, tokens=512)
  assert main(["run", exp, "--set", "model.mixer.chunk=8", "--out", str(out), "--no-progress"]) == 0
  for changed, detail in [
    (["model.mixer.chunk=4"], "model.mixer.chunk: 8 -> 4"),
    (["model.mixer=mamba2", "model.mixer.chunk=8"], "model.mixer.name: 'linear_attention' -> 'mamba2'"),
  ]:
    sets = [a for item in changed for a in ("--set", item)]
    assert main(["run", exp, "--resume", *sets, "--out", str(out), "--no-progress"]) == 2
    line = _error_line(capsys)
    assert "the configuration changed" in line and detail in line


def test_help_lists_the_fields_of_the_chosen_mixer(capsys):
  assert main(["run", "byte_lm", "--set", "model.mixer=titans", "--set", "model.mixer.chunk=16", "--help"]) == 0
  lines = capsys.readouterr().out.splitlines()
  at = lines.index("  model.mixer: str = 'titans'")
  assert "Mixers: deltanet, gated_deltanet, linear_attention," in lines[at + 1]
  assert "another mixer's fields: --set model.mixer=NAME --help." in lines[at + 1]
  depth = "layers of the MLP memory (>= 1; 1: the paper's linear-memory ablation, `x + LN(x W)`)."
  assert lines[lines.index("  model.mixer.depth: int = 2") + 1].strip() == depth
  assert "  model.mixer.momentum: bool = True" in lines and "  model.mixer.decay: bool = True" in lines
  assert "  model.mixer.chunk: int = 16" in lines and "  model.mixer.step: str = 'token'" in lines
  assert not any(line.startswith("  model.mixer.window") for line in lines)  # titans has no attention


def test_a_mixer_registers_its_own_config_class():
  with pytest.raises(
    ValueError, match="TitansConfig is the config of mixer 'titans'; give 'titans_again' its own class"
  ):
    registry.register_mixer("titans_again", TitansConfig)(lambda cfg, model: None)
  with pytest.raises(TypeError, match="the config must be a MixerConfig dataclass"):
    registry.register_mixer("plain", dict)
  assert "titans_again" not in mixer_names()
