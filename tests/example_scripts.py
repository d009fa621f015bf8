"""The scripts in examples/ as modules, for tests that call their functions."""

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def load_example(name):
  """The script `examples/NAME.py` as a module (its `if __name__ == "__main__"` block does not run)."""
  spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module
