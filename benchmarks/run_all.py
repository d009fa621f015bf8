"""Runs every benchmark in this folder in turn (`make bench`), then prints every ratio against its goal.

python benchmarks/run_all.py [name ...]     # default: all of them

Each benchmark ends with one JSON line on stdout; its keys that start with
"ratio" are contlearn's speed against a peer (higher is faster), and its
"goals" (the benchmark's `GOALS`: ratio name -> the ratio to reach) say
which of them have a goal. The closing table has one row per ratio:
benchmark, ratio, value, goal, and whether it is met (value >= goal).
"""

import json
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
SKIP = {"common.py", "official_recursive.py", "run_all.py"}


def last_json(lines: list[str]) -> dict | None:
  """The last line of `lines` that is a JSON object, or None."""
  for line in reversed(lines):
    line = line.strip()
    if line.startswith("{"):
      try:
        return json.loads(line)
      except json.JSONDecodeError:
        continue
  return None


def goal_rows(name: str, payload: dict) -> list[dict]:
  """One row per ratio of a benchmark's final JSON object (`payload`): its ratios with their goals.

  Returns dicts with "benchmark", "ratio", "value", "goal" (None without one)
  and "met" ("met", "not met", or "" without a goal).
  """
  goals = payload.get("goals", {})
  names = [k for k in payload if k.startswith("ratio")] + [k for k in goals if k not in payload]
  rows = []
  for key in names:
    value, goal = payload.get(key), goals.get(key)
    met = "" if goal is None else "met" if value is not None and value >= goal else "not met"
    rows.append({"benchmark": name, "ratio": key, "value": value, "goal": goal, "met": met})
  return rows


def goal_table(rows: list[dict]) -> str:
  """`rows` (from `goal_rows`) as a fixed-width table."""

  def text(v):
    if v is None:
      return "-"
    return f"{v:.2f}" if isinstance(v, float | int) else str(v)

  columns = ["benchmark", "ratio", "value", "goal", "met"]
  cells = [[text(r[c]) for c in columns] for r in rows]
  widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
  lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)), "  ".join("-" * w for w in widths)]
  lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
  return "\n".join(lines)


def run(script: pathlib.Path) -> tuple[int, dict | None]:
  """Runs one benchmark, echoing its output: (exit status, its last JSON line)."""
  lines = []
  env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # its lines as they come, not at its end
  with subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env) as proc:
    for line in proc.stdout:
      print(line, end="", flush=True)
      lines.append(line)
  return proc.returncode, last_json(lines)


def main() -> int:
  names = sys.argv[1:]
  scripts = [p for p in sorted(HERE.glob("*.py")) if p.name not in SKIP]
  if names:
    scripts = [p for p in scripts if p.stem in names]
  failed, rows = [], []
  for script in scripts:
    print(f"\n=== {script.stem} ===", flush=True)
    code, payload = run(script)
    if code:
      failed.append(script.stem)
    if payload is not None:
      rows += goal_rows(script.stem, payload)
  if rows:
    print("\n" + goal_table(rows))
  if failed:
    print(f"failed: {', '.join(failed)}")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
