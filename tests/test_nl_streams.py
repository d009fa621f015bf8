"""The domain-shift and needle-in-a-haystack experiments run small versions end to end."""

import functools
import json
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contlearn import catalog
from contlearn.cl import shift_metrics
from contlearn.engine import Learner
from contlearn.errors import CheckpointError, ConfigError
from contlearn.overrides import apply_overrides


def _load(name):
  """The experiment `name` of this checkout, by path (whatever `contlearn.experiments` an install maps)."""
  return catalog.load(str(pathlib.Path(__file__).resolve().parents[1] / "experiments" / f"{name}.py"))


def _small(name, *settings):
  module = _load(name)
  return module, apply_overrides(module.get_config(), ["small=true", *settings])


@pytest.mark.slow  # about 15 s of CPU; more on a shared machine
def test_domain_shift_small_run_writes_consistent_results(tmp_path):
  exp, cfg = _small("nl_domain_shift", "models=transformer")
  out = tmp_path / "ds"
  result = exp.run(cfg, out, resume=False, progress=False)
  saved = json.loads((out / "domain_shift.json").read_text())
  order = saved["config"]["order"]
  r = saved["models"]["transformer"]
  matrix = np.array(r["matrix"])
  assert matrix.shape == (4, 3) and order == [0, 1, 2, 0]
  first = np.array(r["trace"][0][2])
  assert np.all(first > 7.5) and np.all(matrix < first)  # from about 8 bits at the start, all learned
  assert matrix[0, 0] < matrix[0, 2]  # after the plays, the plays are the best-known domain
  assert r["forgetting"] == pytest.approx(shift_metrics.forgetting(matrix, order))
  assert r["recovery"][0]["forgot"] == pytest.approx(matrix[2, 0] - matrix[0, 0])
  phases = [[(tokens, v) for phase, tokens, v in r["trace"] if phase == j] for j in range(4)]
  assert all([t for t, _ in p] == [2048, 4096, 8192] for p in phases)  # after 1, 2 and 4 chunks of 2,048
  assert [p[-1][1] for p in phases] == r["matrix"]
  assert (out / "domain_shift.png").stat().st_size > 10_000
  assert "| 4: plays |" in exp.report(result) and r["skipped_chunks"] == 0
  again = exp.run(cfg, out, resume=True, progress=False)  # a resume of the finished run: same results
  assert again["models"]["transformer"]["matrix"] == r["matrix"]
  assert again["models"]["transformer"]["trace"] == result["models"]["transformer"]["trace"]
  # its throughput is the training's, kept in the checkpoint, not the units over the resume's few seconds
  assert r["seconds"] > 0 and r["tokens_per_s"] == pytest.approx(len(order) * r["phase_tokens"] / r["seconds"])
  assert again["models"]["transformer"]["tokens_per_s"] == r["tokens_per_s"]


@pytest.mark.slow  # two small runs, about 30 s of CPU
def test_domain_shift_seeds_are_lanes_each_the_run_of_that_seed(tmp_path):
  exp, cfg = _small("nl_domain_shift", "models=transformer", "seeds=0,1")
  result = exp.run(cfg, tmp_path / "seeds", resume=False, progress=False)
  r = result["models"]["transformer"]
  seed1 = apply_overrides(exp.resolved(cfg), ["seeds=", "base.train.seed=1"])  # the small sizes, then the seed
  alone = exp.run(seed1, tmp_path / "one", progress=False)
  one = alone["models"]["transformer"]
  assert r["seeds"] == [0, 1] and len(r["per_seed"]) == 2 and r["retired"] == {}
  # lane 1 is the run of seed 1 alone, to float32 rounding (the lanes are one vmapped program)
  np.testing.assert_allclose(r["per_seed"][1]["matrix"], one["matrix"], rtol=1e-5)
  np.testing.assert_allclose([v for _, _, v in r["per_seed"][1]["trace"]], [v for _, _, v in one["trace"]], rtol=1e-5)
  assert [t[:2] for t in r["per_seed"][1]["trace"]] == [t[:2] for t in one["trace"]]
  np.testing.assert_allclose(r["per_seed"][1]["prequential"], one["prequential"], rtol=1e-5)
  assert not np.allclose(r["per_seed"][0]["matrix"], one["matrix"])  # the seeds differ
  np.testing.assert_allclose(r["matrix"], np.mean([p["matrix"] for p in r["per_seed"]], axis=0))
  assert (tmp_path / "seeds" / "transformer" / "checkpoints").is_dir()  # one program, one folder
  assert r["tokens_per_s"] == pytest.approx(4 * r["phase_tokens"] / r["seconds"])  # stream tokens, read by each lane
  table = exp.report(result)
  first = [line for line in table.splitlines() if line.startswith("| 1: plays |")][0]
  assert first.count(" ± ") == 4  # prequential and three domains, each mean ± std
  again = exp.run(cfg, tmp_path / "seeds", resume=True, progress=False)  # a resume of the finished run
  assert again["models"]["transformer"]["per_seed"] == r["per_seed"]


@pytest.mark.slow  # one small run, about 20 s of CPU
def test_domain_shift_leaves_a_retired_seed_out_and_names_it(tmp_path, monkeypatch, capsys):
  exp, cfg = _small("nl_domain_shift", "models=transformer", "seeds=2,5", "base.train.on_nonfinite=retire")
  build = exp.build_learner

  def poisoned(run_cfg):  # seed 5's lane (the second) turns non-finite at its step 32, in chunk 3 (16 steps a chunk)
    learner = build(run_cfg)
    seed_5 = learner.init(jax.random.PRNGKey(5)).key

    def step(state, x, env=None):
      new, metrics = learner.step(state, x, env)
      bad = (state.step >= 32) & jnp.all(state.key == seed_5)
      params = jax.tree.map(lambda p: jnp.where(bad, jnp.nan, p), new.params)
      return new.replace(params=params), metrics._replace(nll=jnp.where(bad, jnp.nan, metrics.nll))

    return Learner(learner.init, step)

  monkeypatch.setattr(exp, "build_learner", poisoned)
  result = exp.run(cfg, tmp_path / "ds", progress=True)
  r = result["models"]["transformer"]
  lines = [line for line in capsys.readouterr().out.splitlines() if "transformer phase" in line]
  assert len(lines) == 4 and "nan" not in " ".join(lines)  # each phase's progress; from chunk 3 seed 2's alone
  assert [line.endswith("(mean over seeds)") for line in lines] == [True, True, False, False]
  assert [line.endswith("(mean over seeds; retired: seed 5)") for line in lines] == [False, False, True, True]
  assert r["retired"] == {"5": 3} and r["seeds"] == [2] and len(r["per_seed"]) == 1
  assert np.all(np.isfinite(r["matrix"])) and r["matrix"] == r["per_seed"][0]["matrix"]
  assert "(retired for a non-finite value: seed 5)" in exp.report(result)


def test_domain_shift_trace_resumes_a_checkpoint_from_before_lanes():
  """A run saved before the seeds became lanes held one value per domain; its checkpoint still resumes."""
  exp = _load("nl_domain_shift")
  old = {"trace": [(-1, 0, [8.0, 8.1, 8.2]), (0, 2048, [4.0, 5.0, 6.0])], "matrix": [[4.0, 5.0, 6.0]]}
  old |= {"prequential": [4.5], "nll": 12.0, "count": 4.0, "phase_start": 2048, "seen": 0}
  trace = exp.ShiftTrace(None, chunks=2, every=1, describe=None)
  trace.restore(json.loads(json.dumps(old)))
  assert trace.trace[1] == (0, 2048, [[4.0], [5.0], [6.0]]) and trace.matrix == [[[4.0], [5.0], [6.0]]]
  assert trace.prequential == [[4.5]] and trace.nll.tolist() == [12.0] and trace.count.tolist() == [4.0]
  assert trace.meta()["nll"] == [12.0]  # saved again in the lanes' layout


def test_domain_shift_refuses_labels_that_do_not_match_the_domains():
  exp = _load("nl_domain_shift")
  with pytest.raises(ConfigError, match="phase order"):
    exp.resolved(apply_overrides(exp.get_config(), ["order=0,3"]))
  with pytest.raises(ConfigError, match="labels"):
    exp.resolved(apply_overrides(exp.get_config(), ["labels=a,b"]))
  with pytest.raises(ConfigError, match="distinct"):
    exp.resolved(apply_overrides(exp.get_config(), ["seeds=1,1"]))
  cfg = exp.resolved(apply_overrides(exp.get_config(), ["small=true", "phase_tokens=4096", "base.model.d_model=32"]))
  assert cfg.phase_tokens == 4096 and cfg.base.model.d_model == 32 and cfg.evals_per_phase == 2


@pytest.mark.slow  # about 15 s of CPU; more on a shared machine
def test_niah_small_run_reports_accuracy_per_task_and_length(tmp_path):
  exp, cfg = _small("nl_niah", "models=transformer")
  out = tmp_path / "niah"
  result = exp.run(cfg, out, resume=False, progress=False)
  r = json.loads((out / "niah.json").read_text())["models"]["transformer"]
  assert set(r["accuracy"]) == {"single @1L", "single @2L", "multi-key (2) @1L", "multi-key (2) @2L"}
  assert r["seeds"] == [0, 1] and all(len(r[k][c]) == 2 for k in ("accuracy", "digits") for c in r["accuracy"])
  for c in r["accuracy"]:  # exact match <= digit rate, per seed
    assert all(0.0 <= hit <= digit <= 1.0 for hit, digit in zip(r["accuracy"][c], r["digits"][c]))
  assert len(r["loss"]) == 2 and max(r["loss"]) < 5.0  # each seed's answer loss fell from about ln(256) = 5.5
  assert r["loss"][0] != r["loss"][1]  # the seeds are distinct initialisations
  assert "| transformer |" in exp.report(result) and " ± " in exp.report(result)
  records = [json.loads(line) for line in (out / "transformer" / "metrics.jsonl").read_text().splitlines()]
  assert [rec["step"] for rec in records] == [10, 20] and all(len(rec["loss"]) == 2 for rec in records)
  for rec in records:  # each lane's gradient norm before clipping, the block's mean and largest
    assert all(0.0 < mean <= top for mean, top in zip(rec["grad_norm"], rec["grad_norm_max"], strict=True))
  done = out / "transformer" / "row.json"  # as a run saved before `clip` existed (at its former 1.0)
  saved = json.loads(done.read_text())
  del saved["config"]["clip"]
  done.write_text(json.dumps(saved))
  assert exp.run(cfg, out, resume=True, progress=False)["models"] == result["models"]


def test_niah_batches_depend_on_seed_and_step_only():
  exp = _load("nl_niah")
  cfg = exp.resolved(apply_overrides(exp.get_config(), ["small=true", "curriculum=0"]))  # every step full length
  hay = exp.haystacks()[0]
  whole = exp.training_block(cfg, hay, 0, 4)
  later = exp.training_block(cfg, hay, 2, 2)
  assert whole.tokens.shape == (4, 8, 257) and whole.scored.shape == (4, 8, 256) and whole.mask.all()
  np.testing.assert_array_equal(whole.tokens[2:], later.tokens)  # a resumed feed reads the same batches
  assert cfg.digits == 3 and (whole.scored.sum(axis=(1, 2)) == 8 * 3).all()  # the answer digits only
  with pytest.raises(ConfigError, match="batch=1"):
    exp.resolved(apply_overrides(exp.get_config(), ["batch=1"]))
  with pytest.raises(ConfigError, match="distinct initialisation seeds"):
    exp.resolved(apply_overrides(exp.get_config(), ["seeds=1,1"]))
  with pytest.raises(ConfigError, match="warmup=1.0"):
    exp.resolved(apply_overrides(exp.get_config(), ["warmup=1.0"]))
  with pytest.raises(ConfigError, match="clip=-1.0"):
    exp.resolved(apply_overrides(exp.get_config(), ["clip=-1"]))


def test_niah_models_take_settings_by_label():
  exp = _load("nl_niah")
  models = exp.models_with_settings(["hope", "titans"], ["hope.lr_scale=32", "titans.lr_init=0.1"], exp.NiahConfig.base)
  assert models["hope"].mixer.lr_scale == 32.0 and models["titans"].mixer.lr_init == 0.1
  assert models["hope"].mixer.self_values == exp.MODELS["hope"]["mixer"].self_values  # the rest as the label sets it
  with pytest.raises(ConfigError, match="'swa' is not among --models"):
    exp.models_with_settings(["hope"], ["swa.window=8"], exp.NiahConfig.base)


def test_niah_settings_added_later_read_as_their_former_value_when_a_saved_run_lacks_them(tmp_path):
  """The saved config holds every setting; one saved before `curriculum` (then 0) or `clip` (then 1) existed resumes
  at those values and is refused, naming each, at others."""
  exp = _load("nl_niah")
  default = exp._json(exp.get_config())
  assert default["clip"] == 1.0 and default["curriculum"] == 0.5
  former = exp._json(apply_overrides(exp.get_config(), ["curriculum=0"]))
  saved = {k: v for k, v in former.items() if k not in ("curriculum", "clip")}
  exp.check_same_config(saved, former, tmp_path)
  with pytest.raises(CheckpointError, match=r"the configuration changed \(curriculum: 0 -> 0.5\)"):
    exp.check_same_config(saved, default, tmp_path)
  with pytest.raises(CheckpointError, match=r"curriculum: 0 -> 0.5, clip: 1.0 -> 0.0"):
    exp.check_same_config(saved, exp._json(apply_overrides(exp.get_config(), ["clip=0"])), tmp_path)


def test_niah_curriculum_grows_the_haystack_over_its_share_of_the_steps():
  exp = _load("nl_niah")
  cfg = exp.resolved(apply_overrides(exp.get_config(), ["small=true"]))  # 20 steps: 10 to grow
  assert cfg.curriculum == 0.5  # the default
  assert [exp.fill(cfg, i) for i in (0, 5, 10, 19)] == [0.0, 0.5, 1.0, 1.0]
  block = exp.training_block(cfg, exp.haystacks()[0], 0, 20)
  padded = (~block.mask).sum(axis=2)  # [steps, batch] padding bytes at the end
  assert (padded[0] > 80).all() and (padded[10:] == 0).all() and (np.diff(padded.mean(axis=1)[:11]) < 0).all()
  assert (block.scored.sum(axis=2) == 3).all() and not (block.scored & ~block.mask).any()
  plain = exp.resolved(apply_overrides(exp.get_config(), ["small=true", "curriculum=0"]))
  np.testing.assert_array_equal(block.tokens[10:], exp.training_block(plain, exp.haystacks()[0], 10, 10).tokens)
  with pytest.raises(ConfigError, match="curriculum=1.5"):
    exp.resolved(apply_overrides(exp.get_config(), ["curriculum=1.5"]))


def test_niah_spread_is_mean_and_sample_std():
  exp = _load("nl_niah")
  assert exp.spread.text([0.25], 2) == "0.25"
  assert exp.spread.text([0.1, 0.3, 0.5], 2) == "0.30 ± 0.20"


HOPE_BY_HAND = [
  "models=self_modifying_titans",
  "base.mixer=self_modifying_titans",
  "base.mixer.expansion=2",
  "base.cms_periods=1,4,16",
  "base.cms_hidden=1",
]


@pytest.mark.parametrize(
  "label, settings, fields",
  [
    (
      "hope_plain",
      [
        "base.mixer.dgd=false",
        "base.mixer.momentum=false",
        "base.mixer.self_values=false",
        "base.mixer.layer_norm=true",
        "base.mixer.step_norm=false",
        "base.mixer.lr_scale=256",
        "base.n_heads=1",
      ],
      {"n_heads": 1, "mixer.dgd": False, "mixer.lr_scale": 256},
    ),
    (
      "hope_ln",
      ["base.mixer.layer_norm=true", "base.mixer.step_norm=false", "base.mixer.lr_scale=4"],
      {"mixer.layer_norm": True, "mixer.step_norm": False, "mixer.lr_scale": 4},
    ),
  ],
)
def test_niah_hope_labels_are_the_hopes_the_pilots_set_by_hand(label, settings, fields):
  exp = _load("nl_niah")
  by_hand = apply_overrides(exp.get_config(), HOPE_BY_HAND + settings)
  [set_by_hand] = exp.select(exp.MODELS, by_hand.models, by_hand.base, note=None).values()
  [labelled] = exp.select(exp.MODELS, [label], exp.get_config().base, note=None).values()
  [hope] = exp.select(exp.MODELS, ["hope"], exp.get_config().base, note=None).values()
  assert labelled == set_by_hand and labelled != hope
  for path, value in fields.items():
    assert functools.reduce(getattr, path.split("."), labelled) == value, path
