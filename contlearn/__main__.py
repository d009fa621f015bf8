"""`python -m contlearn ...`: the same as the `contlearn` command."""

import sys

from contlearn.cli import main

if __name__ == "__main__":
  sys.exit(main())
