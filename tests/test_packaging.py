"""A wheel carries every experiment: `contlearn list` and `contlearn run` work outside the repository.

The wheel is built from a copy of the sources, installed without dependencies
into a fresh virtual environment that borrows this environment's installed
packages (jax and the rest) through a .pth file but cannot see the source
tree, and run from a folder outside the repository. About 60-90 s on 2 CPU
cores, so it is marked slow (`make test-all`).
"""

import importlib.metadata
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "setup.py", "README.md", "contlearn", "experiments")


def _new_enough_setuptools() -> bool:
  try:
    major = int(importlib.metadata.version("setuptools").split(".")[0])
  except importlib.metadata.PackageNotFoundError:
    return False
  return major >= 77


def _build_wheel(tmp_path: pathlib.Path) -> pathlib.Path:
  """Builds from a copy, so no build/ folder of the checkout (stale or not) leaks into the wheel."""
  src = tmp_path / "src"
  src.mkdir()
  for name in SOURCES:
    if (ROOT / name).is_dir():
      shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    else:
      shutil.copy(ROOT / name, src / name)
  # Offline when this environment has the build backend (the dev extra installs it); else pip fetches it.
  isolation = ["--no-build-isolation"] if _new_enough_setuptools() else []
  subprocess.run(
    [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", str(tmp_path / "dist"), str(src)],
    check=True,
    capture_output=True,
  )
  (wheel,) = (tmp_path / "dist").glob("contlearn-*.whl")
  return wheel


def _borrowed_paths() -> list[str]:
  """This interpreter's import path (site-packages and what their .pth files add), less the checkout's
  source (a project venv inside the checkout, as `make` makes it, is kept: it holds the dependencies)."""
  paths = [pathlib.Path(p).resolve() for p in sys.path if p and pathlib.Path(p).is_dir()]
  source = [p for p in paths if p.is_relative_to(ROOT) and "site-packages" not in p.parts]
  return list(dict.fromkeys(str(p) for p in paths if p not in source))


def _venv_with_borrowed_dependencies(tmp_path: pathlib.Path, wheel: pathlib.Path) -> pathlib.Path:
  """A venv holding only the wheel; this environment's site-packages are appended to its path."""
  venv = tmp_path / "venv"
  subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
  python = venv / "bin" / "python"
  site = pathlib.Path(
    subprocess.run(
      [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
      check=True,
      capture_output=True,
      text=True,
    ).stdout.strip()
  )
  (site / "_borrowed_dependencies.pth").write_text("\n".join(_borrowed_paths()) + "\n")
  subprocess.run(
    [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
    check=True,
    capture_output=True,
  )
  return venv


@pytest.mark.slow
def test_the_wheel_runs_experiments_outside_the_repository(tmp_path):
  venv = _venv_with_borrowed_dependencies(tmp_path, _build_wheel(tmp_path))
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CONTLEARN_EXPERIMENTS")}

  def run(*args: str) -> str:
    done = subprocess.run(args, cwd=elsewhere, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout

  where = run(
    str(venv / "bin" / "python"),
    "-c",
    "import contlearn, contlearn.experiments as e; print(contlearn.__file__); print(e.__file__)",
  )
  site = str(venv / "lib")
  assert all(line.startswith(site) for line in where.splitlines()), where  # the wheel's copy, not the checkout
  assert (pathlib.Path(where.splitlines()[0]).parent / "py.typed").is_file()

  listed = {line.split()[0] for line in run(str(venv / "bin" / "contlearn"), "list").splitlines()}
  assert listed == {p.stem for p in (ROOT / "experiments").glob("*.py") if not p.name.startswith("_")}

  out = tmp_path / "out"
  run(
    str(venv / "bin" / "contlearn"),
    "run",
    "byte_lm",
    "--tokens",
    "4096",
    "--only",
    "linear_attention",
    "--set",
    "data.steps=4",
    "--set",
    "model.d_model=32",
    "--set",
    "model.n_layers=1",
    "--no-progress",
    "--out",
    str(out),
  )
  summary = json.loads((out / "linear_attention" / "summary.json").read_text())
  assert summary["tokens"] == 4096 and summary["name"] == "linear_attention"
  assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["linear_attention"]

  version = run(str(venv / "bin" / "python"), "-m", "contlearn", "--version").strip()
  assert version == f"contlearn {tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']['version']}"
