"""Runs every benchmark in this folder in turn (`make bench`).

python benchmarks/run_all.py [name ...]     # default: all of them
"""

import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
SKIP = {"common.py", "official_recursive.py", "run_all.py"}


def main() -> int:
  names = sys.argv[1:]
  scripts = [p for p in sorted(HERE.glob("*.py")) if p.name not in SKIP]
  if names:
    scripts = [p for p in scripts if p.stem in names]
  failed = []
  for script in scripts:
    print(f"\n=== {script.stem} ===", flush=True)
    if subprocess.run([sys.executable, str(script)]).returncode:
      failed.append(script.stem)
  if failed:
    print(f"failed: {', '.join(failed)}")
  return 1 if failed else 0


if __name__ == "__main__":
  sys.exit(main())
