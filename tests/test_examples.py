"""The documented Python example runs and learns."""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_quickstart_script_runs_and_learns():
  out = subprocess.run(
      [sys.executable, str(ROOT / "examples" / "quickstart.py"), "12"],
      check=True, capture_output=True, text=True, cwd=ROOT,
  ).stdout
  bits = [float(b) for b in re.findall(r"([\d.]+) bits/byte", out)]
  assert len(bits) == 12
  assert bits[-1] < bits[0] - 1.0  # from about 8 bits (uniform) down by more than a bit


def test_quickstart_doc_shows_the_example():
  doc = (ROOT / "docs" / "quickstart.md").read_text()
  assert "examples/quickstart.py" in doc and "cl.levels(" in doc
