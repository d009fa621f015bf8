import pytest

from contlearn.config import Config
from contlearn.errors import ConfigError
from contlearn.overrides import apply_overrides


def test_overrides_parse_each_type():
  cfg = apply_overrides(
    Config(),
    ["model.d_model=64", "train.lr=1e-3", "data.repeat=true", "model.cms_periods=1,16,256", "data.path=/x"],
  )
  assert cfg.model.d_model == 64
  assert cfg.train.lr == 1e-3
  assert cfg.data.repeat is True
  assert cfg.model.cms_periods == (1, 16, 256)
  assert cfg.data.path == "/x"
  assert Config().model.d_model != 64  # the original is untouched (frozen)


def test_short_conv_starts_as_the_identity_unless_set():
  assert Config().model.mixer.conv_init == "identity"
  assert apply_overrides(Config(), ["model.mixer.conv_init=uniform"]).model.mixer.conv_init == "uniform"


@pytest.mark.parametrize(
  "item, message",
  [
    ("model.nope=1", "unknown key"),
    ("nope=1", "unknown key"),
    ("model.d_model=big", "expected an integer"),
    ("train.lr=fast", "expected a number"),
    ("data.repeat=maybe", "expected a boolean"),
    ("model.d_model", "expected key=value"),
    ("model=3", "name a field"),
  ],
)
def test_bad_overrides_name_the_problem(item, message):
  with pytest.raises(ConfigError, match=message):
    apply_overrides(Config(), [item])
