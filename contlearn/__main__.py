"""`python -m contlearn ...`: the same as the `contlearn` command."""

from contlearn.cli import entry

if __name__ == "__main__":
  entry()
