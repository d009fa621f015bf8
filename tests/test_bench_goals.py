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
