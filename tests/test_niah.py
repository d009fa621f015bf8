"""Needle-in-a-haystack generators: the needle, the question and the scored answer are where they should be."""

import re

import numpy as np
import pytest

from contlearn.errors import ConfigError
from contlearn.stream import niah

HAY = bytes(np.random.default_rng(9).integers(ord("a"), ord("z") + 1, 20_000, dtype=np.uint8))
NEEDLE = re.compile(rb" The special magic number(?: for ([a-z]{5}))? is (\d{5})\. ")


def _parts(row: np.ndarray):
  text = bytes(row.astype(np.uint8))
  body, _, asked = text.rpartition(b"\nWhat is the special magic number")
  asked = asked.replace(b" The special magic number", b"", 1)  # the answer prefix
  return text, body, asked


def test_single_needle_and_answer():
  batch = niah.sample(np.random.default_rng(0), HAY, 6, 256)
  assert batch.tokens.shape == (6, 257) and batch.answer.shape == (6, 256)
  for row, answer, depth in zip(batch.tokens, batch.answer, batch.depth):
    text, body, asked = _parts(row)
    needles = NEEDLE.findall(body)
    assert len(needles) == 1 and needles[0][0] == b""
    value = needles[0][1]
    assert asked == b"? is " + value and text.endswith(value)
    # The mask covers exactly the answer digits among the targets tokens[1:].
    assert bytes(row[1:][answer].astype(np.uint8)) == value and answer.sum() == 5
    assert answer[-5:].all() and not answer[:-5].any()
    # Around the needle is one contiguous slice of the haystack.
    at = NEEDLE.search(body).start()
    assert depth == pytest.approx(at / len(body))
    assert NEEDLE.sub(b"", body) in HAY


def test_multi_key_asks_one_of_distinct_keys():
  batch = niah.sample(np.random.default_rng(1), HAY, 8, 512, keys=3, digits=4)
  for row, answer in zip(batch.tokens, batch.answer):
    text, body, asked = _parts(row)
    found = re.findall(rb" The special magic number for ([a-z]{5}) is (\d{4})\. ", body)
    keys = [k for k, _ in found]
    assert len(found) == 3 and len(set(keys)) == 3
    key, again, value = re.fullmatch(rb" for ([a-z]{5})\? for ([a-z]{5}) is (\d{4})", asked).groups()
    assert again == key
    assert dict(found)[key] == value
    assert bytes(row[1:][answer].astype(np.uint8)) == value
    assert re.sub(rb" The special magic number for [a-z]{5} is \d{4}\. ", b"", body) in HAY


def test_same_seed_same_batch():
  a = niah.sample(np.random.default_rng(5), HAY, 4, 256, keys=2)
  b = niah.sample(np.random.default_rng(5), HAY, 4, 256, keys=2)
  c = niah.sample(np.random.default_rng(6), HAY, 4, 256, keys=2)
  np.testing.assert_array_equal(a.tokens, b.tokens)
  np.testing.assert_array_equal(a.depth, b.depth)
  assert not np.array_equal(a.tokens, c.tokens)


def test_depths_spread_over_the_haystack():
  depth = niah.sample(np.random.default_rng(2), HAY, 200, 1024).depth
  assert depth.min() < 0.1 and depth.max() > 0.9 and abs(depth.mean() - 0.5) < 0.07


def test_too_short_a_context_is_named():
  with pytest.raises(ConfigError, match="3 key\\(s\\) needs more than length=160"):
    niah.sample(np.random.default_rng(0), HAY, 1, 160, keys=3)


@pytest.mark.parametrize("keys", [0, 2])
def test_a_shorter_haystack_keeps_the_needles_and_the_answer_and_ends_in_padding(keys):
  full = niah.sample(np.random.default_rng(3), HAY, 6, 256, keys=keys)
  short = niah.sample(np.random.default_rng(3), HAY, 6, 256, keys=keys, fill=0.25)
  assert full.real.all() and short.tokens.shape == full.tokens.shape
  for row, real, answer in zip(short.tokens, short.real, short.answer):
    n = int(np.sum(real)) + 1  # the example's bytes, then padding
    assert real[: n - 1].all() and (row[n:] == 0).all() and row[n - 1] != 0
    text, body, asked = _parts(row[:n])
    needles = list(NEEDLE.finditer(body))
    assert len(needles) == max(keys, 1)
    value = dict((m.group(1) or b"", m.group(2)) for m in needles)[asked[5:10] if keys else b""]
    assert text.endswith(value) and bytes(row[1:][answer].astype(np.uint8)) == value
    assert answer.sum() == 5 and answer[n - 6 : n - 1].all()  # the last targets before the padding
    hay = NEEDLE.sub(b"", body)
    room = 257 - sum(len(m.group(0)) for m in needles) - (len(text) - len(body))  # the haystack at fill=1
    assert len(hay) == round(0.25 * room) and hay in HAY


def test_fill_outside_zero_one_is_named():
  with pytest.raises(ConfigError, match="fill=1.5 must lie in"):
    niah.sample(np.random.default_rng(0), HAY, 1, 256, fill=1.5)
