"""The documented Python example runs, learns, logs and resumes."""

import json
import pathlib
import subprocess
import sys

import pytest

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
