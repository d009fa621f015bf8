"""The MQAR generator: every scored position asks for the value bound to its key."""

import json
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from contlearn.memories import mqar


def test_answers_are_bound_values():
  pairs = jnp.array([1, 3, 5, 5])
  b = mqar.sample(jax.random.PRNGKey(0), 4, pairs, 5, n_keys=8, n_values=6)
  tokens, answer = np.asarray(b.tokens), np.asarray(b.answer)
  assert tokens.shape == (4, 20) and answer.shape == (4, 19)
  for row, n in zip(range(4), [1, 3, 5, 5]):
    seq = tokens[row]
    bound = dict(zip(seq[0 : 2 * n : 2], seq[1 : 2 * n : 2]))
    assert len(bound) == n and all(1 <= k <= 8 for k in bound) and all(9 <= v <= 14 for v in bound.values())
    scored = np.flatnonzero(answer[row])
    assert len(scored) == n and all(2 * n <= p < 4 * n for p in scored)
    assert sorted(seq[p] for p in scored) == sorted(bound)
    assert all(seq[p + 1] == bound[seq[p]] for p in scored)
    assert (seq[4 * n :] == 0).all()


def test_pair_counts_follow_their_mix():
  key = jax.random.PRNGKey(1)
  uni = np.asarray(mqar.pair_counts(key, 40_000, 16, "uniform"))
  log = np.asarray(mqar.pair_counts(key, 40_000, 16, "log_uniform"))
  for counts in (uni, log):
    assert counts.min() == 1 and counts.max() == 16
  np.testing.assert_allclose(np.bincount(uni, minlength=17)[1:] / 40_000, 1 / 16, atol=0.006)
  want = np.log1p(1 / np.arange(1, 17)) / np.log(17)
  np.testing.assert_allclose(np.bincount(log, minlength=17)[1:] / 40_000, want, atol=0.006)
  with pytest.raises(ValueError, match="mix"):
    mqar.pair_counts(key, 4, 16, "zipf")


@pytest.mark.parametrize("args", [["--n-keys", "8", "--max-pairs", "16"], ["--n-values", "-1"], ["--max-pairs", "1"]])
def test_experiment_refuses_impossible_sequences(args, tmp_path):
  root = pathlib.Path(__file__).resolve().parents[2]
  done = subprocess.run([sys.executable, str(root / "experiments" / "mqar.py"), *args, "--out", str(tmp_path)],
                        capture_output=True, text=True, cwd=root)
  assert done.returncode == 2 and args[0] in done.stderr and not list(tmp_path.iterdir())


@pytest.mark.slow
def test_small_experiment_picks_each_models_best_rate(tmp_path):
  """`experiments/mqar.py --small`: every model at every rate, the row is the best validation lane."""
  root = pathlib.Path(__file__).resolve().parents[2]
  subprocess.run([sys.executable, str(root / "experiments" / "mqar.py"), "--small", "--out", str(tmp_path)],
                 check=True, capture_output=True, text=True, cwd=root)
  result = json.loads((tmp_path / "mqar_small.json").read_text())
  cfg, rows = result["config"], result["rows"]
  assert [r["memory"] for r in rows] == [r["label"] for r in cfg["runs"]] and len(rows) == 2
  for row in rows:
    lanes = row["lanes"]
    assert [lane["lr"] for lane in lanes] == cfg["lrs"]
    best = max(lanes, key=lambda lane: lane["val"])
    assert row["lr"] == best["lr"] and all(row[f"n={n}"] == best[f"n={n}"] for n in cfg["eval_pairs"])
    for lane in lanes:
      assert all(0.0 <= lane[f"n={n}"] <= 1.0 for n in cfg["eval_pairs"])
      assert lane["loss"] < np.log(mqar.vocab_size(cfg["n_keys"], cfg["n_values"]))  # below a uniform guess
