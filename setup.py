"""Which packages the wheel holds; everything else is in pyproject.toml.

The experiments stay in the repository's top-level `experiments/` folder and
install as the subpackage `contlearn.experiments`. pyproject.toml can list
packages by hand or find them, not both, so the mapped folder is added to
the found packages here, and new subpackages of contlearn need no edit.
"""

from setuptools import find_packages, setup

setup(
  packages=[*find_packages(include=["contlearn", "contlearn.*"]), "contlearn.experiments"],
  package_dir={"contlearn.experiments": "experiments"},
)
