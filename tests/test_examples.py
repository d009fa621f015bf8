"""The documented Python example runs, learns, logs and resumes."""

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from example_scripts import load_example

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHUNK = 32 * 8 * 64  # tokens per chunk of the example's stream


def _quickstart(tokens, out):
  return subprocess.run(
    [sys.executable, str(ROOT / "examples" / "quickstart.py"), str(tokens), str(out)],
    check=True,
    capture_output=True,
    text=True,
    cwd=ROOT,
  ).stdout


@pytest.mark.slow  # make test: tests/test_bring_your_own.py runs cl.fit with resume
def test_quickstart_script_runs_learns_and_resumes(tmp_path):
  out = tmp_path / "qs"
  assert _quickstart(5 * CHUNK, out).startswith(f"{5 * CHUNK:,} tokens")
  records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
  assert [r["chunk"] for r in records] == list(range(1, 6))
  assert records[-1]["bits_per_byte"] < records[0]["bits_per_byte"] - 1.0  # from about 8 bits down by more than a bit
  # Run again with a larger budget: it resumes from its checkpoint at chunk 5.
  assert _quickstart(6 * CHUNK, out).startswith(f"{6 * CHUNK:,} tokens")
  records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
  assert [r["chunk"] for r in records] == list(range(1, 7))


def test_quickstart_doc_shows_the_example():
  doc = (ROOT / "docs" / "quickstart.md").read_text()
  assert "examples/quickstart.py" in doc and "cl.levels(" in doc and "cl.fit(" in doc


@pytest.mark.slow
def test_ewc_fisher_example_reads_the_penalty_after_each_task(tmp_path):
  tiny = ["split.steps_per_task=4", "split.eval_every=2", "split.hidden=8", "split.batch=4", "split.max_test=4"]
  argv = [sys.executable, str(ROOT / "examples" / "ewc_fisher.py"), "--out", str(tmp_path / "f")]
  for item in tiny:
    argv += ["--set", item]
  stdout = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=ROOT).stdout
  assert stdout.startswith("ewc_task: ewc strength=10000000.0, seeds 0, 1, 2")
  saved = json.loads((tmp_path / "f" / "fisher.json").read_text())
  sums = np.asarray([row["sum"] for row in saved["fisher"]])  # [tasks, seeds]
  assert sums.shape == (5, 3) and (sums > 0).all()
  assert (np.diff(sums, axis=0) >= 0).all()  # EWC adds each task's Fisher (a sum of squares) to the last
  assert np.asarray(saved["task0"]).shape == (3, 5)


@pytest.mark.slow
def test_memory_growth_example_reads_the_memory_after_each_chunk(tmp_path):
  argv = [sys.executable, str(ROOT / "examples" / "memory_growth.py"), "--phase-tokens", "1024"]
  argv += ["--set", "lr_init=0.3", "--out", str(tmp_path / "g")]
  stdout = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=ROOT).stdout
  assert stdout.startswith("titans: TitansConfig(") and "chunk=16," in stdout and "lr_init=0.3, step='chunk'" in stdout
  saved = json.loads((tmp_path / "g" / "memory_growth.json").read_text())
  assert saved["order"] == [1, 2, 0, 1] and saved["stopped"] is None
  assert [r["chunk"] for r in saved["chunks"]] == [1, 2, 3, 4]  # 1,024 tokens a phase round up to one chunk
  assert all(np.isfinite(r["loss"]) and r["largest"] > 0 for r in saved["chunks"])
  assert all(r["where"].startswith(("[0]", "[1]")) for r in saved["chunks"])  # a path into one layer's memory


@pytest.mark.slow
def test_memory_growth_example_names_each_of_hopes_memories(tmp_path):
  argv = [sys.executable, str(ROOT / "examples" / "memory_growth.py"), "--model", "hope", "--order", "0"]
  argv += ["--phase-tokens", "1024", "--set", "lr_scale=1", "--out", str(tmp_path / "g")]
  stdout = subprocess.run(argv, check=True, capture_output=True, text=True, cwd=ROOT).stdout
  assert stdout.startswith("hope: SelfModifyingTitansConfig(") and "lr_scale=1.0, decay_to_init=True" in stdout
  saved = json.loads((tmp_path / "g" / "memory_growth.json").read_text())
  assert [r["chunk"] for r in saved["chunks"]] == [1] and saved["stopped"] is None
  sizes = saved["largest_by_leaf"]
  names = ("k", "v", "eta", "alpha", "momentum", "mem")
  for layer in (0, 1):  # the last layer of every memory's MLP, its momentum, and the convolution
    assert [f"[{layer}]['w']['w'][1][{n}]" in sizes for n in names] == [True] * 6
    assert [f"[{layer}]['m']['w'][1][{n}]" in sizes for n in names] == [True] * 6
    assert f"[{layer}]['conv']" in sizes
  assert all(np.isfinite(v) and v >= 0 for v in sizes.values())
  shares = saved["written_share"]  # |D| / |M_0|: the memories start at M_0 and write a little in one chunk
  assert sorted(shares) == sorted(f"[{layer}][{n}]" for layer in (0, 1) for n in names)
  assert all(0 < v < 1 for v in shares.values())


def _write_effect():
  return load_example("niah_write_effect")


def test_write_effect_silences_each_memory_by_its_own_rate():
  from contlearn.config import ModelConfig
  from contlearn.errors import ConfigError

  example = _write_effect()
  models = example.NIAH.models_with_settings(["hope", "titans", "gated_deltanet"], [], ModelConfig())
  assert example.without_writes(models["hope"]).mixer.lr_scale == example.NEAR_ZERO
  assert example.without_writes(models["titans"]).mixer.lr_init == example.NEAR_ZERO
  assert example.without_writes(models["gated_deltanet"]).mixer.lr_init == example.NEAR_ZERO
  with pytest.raises(ConfigError, match="no inner rate"):
    example.without_writes(ModelConfig(mixer="swa"))


@pytest.mark.slow
def test_write_effect_is_zero_when_the_rate_is_already_near_zero(capsys):
  example = _write_effect()
  args = ["--models", "titans", "--seeds", "0", "--batch", "2", "--length", "128"]
  moved = example.main(args)["titans"]
  still = example.main([*args, "--set", f"titans.lr_init={example.NEAR_ZERO}"])["titans"]
  assert moved["effect"][0] == moved["writing"][0] - moved["rate_near_zero"][0] and abs(moved["effect"][0]) > 1e-3
  assert still["effect"] == [0.0] and still["rate_near_zero"] == moved["rate_near_zero"]
  assert capsys.readouterr().out.startswith("titans: the writes move the loss by")


def test_gradient_norms_are_grouped_by_initial_memory():
  example = load_example("niah_gradient_norms")
  sm = {"w0": {"w": [np.ones((2, 3, 4))], "b": [np.full((2, 3, 1), 2.0)]}, "wq": np.ones((2, 5)), "bias": np.ones(3)}
  grads = {"blocks": [{"mixer": {"sm": sm, "wo": np.full((2,), 3.0)}}], "embed": np.ones((1,))}
  squares = example.group_squares(grads, ("k", "v", "mem"))
  # each memory: 2 heads x (4 ones + 1 two squared); rest: wq 10, bias 3, wo 2 x 9, embed 1
  assert squares == {"k": 16.0, "v": 16.0, "mem": 16.0, "rest": 32.0}


@pytest.mark.slow  # compiles Hope's gradient and its training step: about a minute of CPU
def test_gradient_norm_example_reads_the_norm_the_training_step_logs():
  import jax
  import optax

  from contlearn import engine
  from contlearn.learner import sequence_learner
  from contlearn.models import byte_lm

  example = load_example("niah_gradient_norms")
  row = example.main(["--models", "hope_plain", "--seeds", "1", "--batches", "1"])["hope_plain"][0]
  assert sorted(row["share"]) == sorted(["k", "v", "eta", "alpha", "mem", "rest"])
  assert sum(row["share"].values()) == pytest.approx(1.0) and all(0 <= v < 1 for v in row["share"].values())
  cfg = example.NIAH.resolved(example.NIAH.get_config())
  mcfg = example.NIAH.models_with_settings(["hope_plain"], [], cfg.base)["hope_plain"]
  learner = sequence_learner(byte_lm(mcfg), optax.identity(), cfg.batch, carry_memory=False)
  state = learner.init(engine.seed_keys([1])[0])
  first = jax.tree.map(lambda a: a[0], example.NIAH.training_block(cfg, example.NIAH.haystacks()[0], 0, 1))
  _, metrics = jax.jit(learner.step)(state, first)
  assert row["grad_norm"] == pytest.approx(float(metrics.grad_norm), rel=1e-4)


@pytest.mark.slow  # (make test-all) builds the MQAR attention learner and both starts: about 15 s on 2 cores
def test_attention_starts_differ_only_in_the_parameters():
  import jax

  from contlearn.errors import ConfigError

  example = load_example("mqar_attention_starts")
  cfg = example.config([0, 1], ["small=true"])
  model, learner, init_state = example.MQAR.learner_and_state(cfg, example.MQAR.ROWS["attention"])
  state, keys = example.two_starts(cfg, model, learner)
  experiment = init_state()  # lane j: seed j as `contlearn run mqar` starts it
  for j, seed in enumerate(cfg.seeds):
    engine_lane, own_lane = (jax.tree.map(lambda a, i=i: np.asarray(a[i]), state) for i in (2 * j, 2 * j + 1))
    as_run = jax.tree.map(lambda a, j=j: np.asarray(a[j]), experiment)
    jax.tree.map(np.testing.assert_array_equal, engine_lane, as_run)
    jax.tree.map(np.testing.assert_array_equal, own_lane.replace(params=engine_lane.params), engine_lane)
    jax.tree.map(np.testing.assert_array_equal, own_lane.params, model.init_params(jax.random.PRNGKey(seed)))
    np.testing.assert_array_equal(keys[2 * j], keys[2 * j + 1])
  with pytest.raises(ConfigError, match="one rate"):
    example.config([0], ["lrs=0.001,0.003"])


@pytest.mark.slow  # two small MQAR runs of full attention: about half a minute
def test_attention_starts_engine_lane_trains_as_the_experiment(tmp_path, capsys):
  example = load_example("mqar_attention_starts")
  result = example.main(["--seeds", "0", "--set", "small=true", "--every", "20", "--out", str(tmp_path / "s")])
  cfg = example.config([0], ["small=true"])
  row = example.MQAR.train_and_eval(cfg, "attention", tmp_path / "row", resume=False, progress=False)
  engine_lane, own_lane = result["lanes"]
  assert engine_lane["final_loss"] == pytest.approx(row["loss"][0], rel=1e-5)
  assert own_lane["final_loss"] != pytest.approx(row["loss"][0], rel=1e-3)
  assert sorted(engine_lane["loss"]) == [20, 40, 60]
  assert capsys.readouterr().out.count("seed 0, start") == 2


def test_loss_windows_sums_up_each_models_loss_log(tmp_path, capsys):
  example = load_example("loss_windows")
  blocks = [
    {
      "block": b,
      "step": 20 * b,
      "loss": [3.0 - b, 4.0 - b],
      "grad_norm": [1.0 * b, 2.0],
      "grad_norm_max": [2.0 * b, 9.0 - b],
    }
    for b in (1, 2, 3, 4, 5, 6)
  ]
  (tmp_path / "hope").mkdir()
  (tmp_path / "hope" / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in blocks))
  (tmp_path / "lm").mkdir()
  (tmp_path / "lm" / "metrics.jsonl").write_text(json.dumps({"tokens": 64, "bits_per_byte": 3.0}) + "\n")
  found = example.main([str(tmp_path), "--every", "60"])
  assert list(found) == ["hope"]  # the log without gradient norms is left out
  assert found["hope"] == [
    {"first": 1, "last": 60, "loss": [1.0, 2.0], "grad_norm": [2.0, 2.0], "grad_norm_max": [6.0, 8.0]},
    {"first": 61, "last": 120, "loss": [-2.0, -1.0], "grad_norm": [5.0, 2.0], "grad_norm_max": [12.0, 5.0]},
  ]
  assert "      1-60     1.000 / 2.000 | 2.000 / 2.000 | 6.000 / 8.000" in capsys.readouterr().out
  with pytest.raises(SystemExit, match="no metrics.jsonl with gradient norms"):
    example.main([str(tmp_path / "lm")])


def _small_self_modifying_head(plain: bool):
  """A self-modifying head of width 4 in float64 (call under `jax.enable_x64`): Hope's rule, or plain steps
  with a LayerNorm as hope_plain's. Returns its spec, params, state and 12 random inputs [12, 4]."""
  import jax
  import jax.numpy as jnp

  from contlearn.memories import rules
  from contlearn.memories import self_modifying as sm

  rule = rules.self_modifying(2, dgd=not plain, momentum=not plain, layer_norm=plain, normalized=not plain)
  spec = sm.SelfModifying(rule, chunk_mem=2, chunk_proj=4, lr_scale=0.5)
  params, state = jax.tree.map(lambda a: a.astype(jnp.float64), sm.init(spec, jax.random.key(0), 4))
  return spec, params, state, jax.random.normal(jax.random.key(1), (12, 4), jnp.float64)


# Hope's rule (make test); plain steps with a LayerNorm as hope_plain's (make test-all: ten seconds of CPU each)
PLAIN_HEAD = [False, pytest.param(True, marks=pytest.mark.slow)]


@pytest.mark.parametrize("plain", PLAIN_HEAD)
def test_memory_sensitivity_is_the_derivative_of_the_reads(plain):
  import jax
  import jax.numpy as jnp

  from contlearn.memories import self_modifying as sm

  example = load_example("memory_sensitivity")
  with jax.enable_x64(True):
    spec, params, state, x = _small_self_modifying_head(plain)
    u = example.unit_direction(params["w0"], jax.random.key(2))
    assert sum(float(jnp.sum(a**2)) for a in jax.tree.leaves(u)) == pytest.approx(1.0)
    dy = example.read_sensitivity(spec, params, x, u)

    def reads(scale):  # the head's reads with its initial memories moved by scale * u
      w0 = jax.tree.map(lambda w, d: w + scale * d, params["w0"], u)
      return sm.reference(spec, {**params, "w0": w0}, state, x, jnp.ones((12,), bool))[0]

    eps = 1e-6
    central = np.linalg.norm((reads(eps) - reads(-eps)) / (2 * eps), axis=-1)
  assert dy.shape == (12,) and np.all(dy > 0)
  np.testing.assert_allclose(dy, central, rtol=1e-5)


def test_memory_sensitivity_growth_is_the_log_slope_of_the_second_half():
  example = load_example("memory_sensitivity")
  t = np.arange(400)
  dy = np.where(t < 200, 1.0, np.exp(0.03 * t))  # flat, then geometric: only the second half counts
  assert example.growth_per_token(dy) == pytest.approx(0.03)
  assert example.growth_per_token(np.full(400, 0.5)) == pytest.approx(0.0, abs=1e-12)


def test_memory_sensitivity_moves_only_the_weights_of_memories_without_biases():
  import jax
  import jax.numpy as jnp

  from contlearn.memories import rules
  from contlearn.memories import self_modifying as sm

  example = load_example("memory_sensitivity")
  spec = sm.SelfModifying(rules.self_modifying(2))
  w0 = sm.init(spec, jax.random.key(0), 4)[0]["w0"]
  d = example.initial_memory_direction(spec, w0, jax.random.key(1))
  assert jax.tree.structure(d) == jax.tree.structure(w0)
  assert all(float(jnp.max(jnp.abs(b))) == 0.0 for b in d["b"])
  assert sum(float(jnp.sum(w**2)) for w in d["w"]) == pytest.approx(1.0)


def test_memory_sensitivity_moves_only_the_memories_named():
  import jax
  import jax.numpy as jnp

  from contlearn.errors import ConfigError
  from contlearn.memories import rules
  from contlearn.memories import self_modifying as sm

  example = load_example("memory_sensitivity")
  spec = sm.SelfModifying(rules.self_modifying(2))
  w0 = sm.init(spec, jax.random.key(0), 4)[0]["w0"]
  d = example.initial_memory_direction(spec, w0, jax.random.key(1), ("v", "mem"))
  moved = np.array([spec.names.index("v"), spec.names.index("mem")])
  for w in d["w"]:
    assert float(jnp.max(jnp.abs(jnp.delete(w, moved, axis=0)))) == 0.0 and float(jnp.min(jnp.abs(w[moved]))) > 0
  assert sum(float(jnp.sum(w**2)) for w in d["w"]) == pytest.approx(1.0)
  with pytest.raises(ConfigError, match="choose among k,v,eta,alpha,momentum,mem"):
    example.initial_memory_direction(spec, w0, jax.random.key(1), ("q",))


@pytest.mark.parametrize("plain", PLAIN_HEAD)
def test_memory_sensitivity_held_routes(plain):
  """Holding k, v and the rates leaves the reads and the main memory's own route as they are, and cuts every
  route from the projection memories (the reads see them only through k, v and the rates)."""
  import jax
  import jax.numpy as jnp

  from contlearn.memories import self_modifying as sm

  example = load_example("memory_sensitivity")
  with jax.enable_x64(True):
    spec, params, state, x = _small_self_modifying_head(plain)
    mask = jnp.ones((12,), bool)
    y = sm.reference(spec, params, state, x, mask)[0]
    np.testing.assert_array_equal(sm.reference(spec, params, state, x, mask, sm.HELD)[0], y)
    main = example.initial_memory_direction(spec, params["w0"], jax.random.key(2), ("mem",))
    projections = example.initial_memory_direction(spec, params["w0"], jax.random.key(2), spec.projections)
    free, held = (example.read_sensitivity(spec, params, x, main, h) for h in ((), sm.HELD))
    assert np.all(free > 0)
    np.testing.assert_allclose(held, free, rtol=1e-12)
    assert np.all(example.read_sensitivity(spec, params, x, projections) > 0)
    assert np.all(example.read_sensitivity(spec, params, x, projections, sm.HELD) == 0)
    for name in sm.HELD:  # each route alone carries part of the projection memories' change
      assert np.any(example.read_sensitivity(spec, params, x, projections, (name,)) > 0)
    with pytest.raises(ValueError, match="choose among k, v, rates"):
      sm.reference(spec, params, state, x, mask, ("q",))


@pytest.mark.slow  # draws two byte LMs and runs a head over 300 bytes, forward mode: about a minute of CPU
def test_memory_sensitivity_example_reads_each_models_first_head(capsys):
  from contlearn.errors import ConfigError

  example = load_example("memory_sensitivity")
  result = example.main(["--models", "hope,hope_plain", "--seeds", "1", "--tokens", "300"])
  for label in ("hope", "hope_plain"):
    (row,) = result[label]
    assert row["seed"] == 1 and sorted(row["dy_at"]) == [16, 64, 128, 192, 256, 300]
    assert all(np.isfinite(v) and v > 0 for v in row["dy_at"].values()) and np.isfinite(row["growth_per_token"])
  assert capsys.readouterr().out.startswith("hope seed 1: |dy_t| at t = 16:")
  with pytest.raises(ConfigError, match="no self-modifying memories"):
    example.main(["--models", "titans", "--seeds", "1", "--tokens", "300"])


def test_cell_figures_docstring_examples():  # the example on a finished cell: tests/cl/test_cl_run.py
  import doctest

  assert doctest.testmod(load_example("cell_figures")).failed == 0
