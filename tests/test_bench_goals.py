"""`make bench`'s closing table: every ratio of a benchmark's JSON line against its goal."""

from benchmarks import run_all


def test_each_ratio_is_read_against_its_goal():
  payload = {"ratio_bs10": 11.1, "ratio_bs128": 2.6, "samples": 5, "goals": {"ratio_bs10": 12.0, "ratio_bs128": 2.0}}
  rows = run_all.goal_rows("cl_vs_pytorch", payload)
  assert [(r["ratio"], r["value"], r["goal"], r["met"]) for r in rows] == [
    ("ratio_bs10", 11.1, 12.0, "not met"),
    ("ratio_bs128", 2.6, 2.0, "met"),
  ]


def test_a_ratio_without_a_goal_and_a_goal_without_its_ratio():
  rows = run_all.goal_rows("x", {"ratio": 3.0, "goals": {"ratio_missing": 2.0}})
  assert [(r["ratio"], r["goal"], r["met"]) for r in rows] == [("ratio", None, ""), ("ratio_missing", 2.0, "not met")]
  table = run_all.goal_table(rows).splitlines()
  assert table[0].split() == ["benchmark", "ratio", "value", "goal", "met"]
  assert table[2].split() == ["x", "ratio", "3.00", "-"]
  assert table[3].split() == ["x", "ratio_missing", "-", "2.00", "not", "met"]


def test_the_last_json_line_is_the_result():
  assert run_all.last_json(["table", '{"ratio": 1.0}', "{not json", "done"]) == {"ratio": 1.0}
  assert run_all.last_json(["no json here"]) is None


def test_hope_ratios_and_goals_per_width():
  from benchmarks import hope_vs_transformer as hvt

  rows = [
    {"model": "hope", "width_asked": 256, "tokens_per_s": 1000.0, "gflops_per_s": 50.0, "matmul_fraction": 0.25},
    {"model": "transformer", "width_asked": 256, "tokens_per_s": 8000.0, "gflops_per_s": 90.0},
    {"model": "transformer_equal_params", "width_asked": 256, "tokens_per_s": 5000.0, "gflops_per_s": 95.0},
  ]
  found, goals = hvt.ratios(rows)
  assert found == {
    "ratio_matmul_fraction_w256": 0.25,
    "ratio_equal_params_w256": 0.2,
    "ratio_equal_width_w256": 0.125,
  }
  assert goals == {"ratio_matmul_fraction_w256": 0.40, "ratio_equal_params_w256": 0.25}
  met = {r["ratio"]: r["met"] for r in run_all.goal_rows("hope_vs_transformer", {**found, "goals": goals})}
  assert met == {
    "ratio_matmul_fraction_w256": "not met",
    "ratio_equal_params_w256": "not met",
    "ratio_equal_width_w256": "",
  }
