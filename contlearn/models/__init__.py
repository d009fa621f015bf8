"""Models: pure sequence mixers (registered by name) and the byte-level LM."""

from contlearn.mixer_configs import mixer_names
from contlearn.models import attention, hope, linear_attention, titans, ttt  # noqa: F401  (registers mixers)
from contlearn.models.lm import Model, byte_lm
from contlearn.models.mixer import Mixer, build_mixer, register_mixer

__all__ = ["Mixer", "Model", "build_mixer", "byte_lm", "mixer_names", "register_mixer"]
