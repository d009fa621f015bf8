"""ARC grids on the canvas: the exact layout, exact round trips at every translation, malformed canvases refused."""

import numpy as np
import pytest

from contlearn.puzzles import arc_canvas

SHAPES = [(1, 1), (3, 5), (5, 3), (30, 30), (30, 1), (1, 30), (29, 30), (12, 7)]


def _grid(shape, seed=0):
  return np.random.default_rng(seed).integers(10, size=shape).astype(np.int32)


def test_the_layout_is_hrm_s():
  """Colours shifted by 2, EOS (1) below and right of the grid, the corner and the rest PAD (0)."""
  canvas = arc_canvas.encode(np.array([[0, 9, 4]]), side=5, row=2, col=1).reshape(5, 5)
  want = np.array(
    [
      [0, 0, 0, 0, 0],
      [0, 0, 0, 0, 0],
      [0, 2, 11, 6, 1],
      [0, 1, 1, 1, 0],
      [0, 0, 0, 0, 0],
    ]
  )
  assert canvas.dtype == np.int32 and (canvas == want).all()
  edge = arc_canvas.encode(np.array([[3], [3]]), side=3, row=1, col=2).reshape(3, 3)  # touches bottom and right
  assert (edge == [[0, 0, 0], [0, 0, 5], [0, 0, 5]]).all()
  assert arc_canvas.encode(_grid((30, 30))).shape == (900,) and arc_canvas.VOCAB == 12


@pytest.mark.parametrize("shape", SHAPES)
def test_decoding_inverts_encoding_at_every_translation(shape):
  grid = _grid(shape, seed=shape[0] * 31 + shape[1])
  side = 30
  for row in range(side - shape[0] + 1):
    for col in range(side - shape[1] + 1):
      canvas = arc_canvas.encode(grid, side, row, col)
      back = arc_canvas.decode(canvas, side, row, col)
      assert back.dtype == np.int32 and back.shape == shape and (back == grid).all(), (row, col)
  small = _grid((2, 3))
  assert (arc_canvas.decode(arc_canvas.encode(small, side=4, row=2, col=1), 4, 2, 1) == small).all()


def test_tokens_past_the_marks_are_not_read():
  grid = _grid((3, 4), seed=1)
  canvas = arc_canvas.encode(grid).reshape(30, 30)
  canvas[4:, :] = 7  # colours below the EOS row
  canvas[:3, 5:] = 9  # and right of the EOS column
  canvas[3, 4] = 5  # the corner
  assert (arc_canvas.decode(canvas.ravel()) == grid).all()


def _broken(change):
  canvas = arc_canvas.encode(_grid((3, 4), seed=2)).reshape(30, 30)
  change(canvas)
  return arc_canvas.decode(canvas.ravel())


@pytest.mark.parametrize(
  "name, change",
  [
    ("a missing EOS below", lambda c: c.__setitem__((3, 2), 0)),
    ("a colour where EOS belongs, right", lambda c: c.__setitem__((1, 4), 6)),
    ("a hole inside the grid", lambda c: c.__setitem__((2, 2), 0)),
    ("an EOS inside the grid", lambda c: c.__setitem__((1, 1), 1)),
    ("a token past the vocabulary", lambda c: c.__setitem__((1, 2), 12)),
    ("nothing at the origin", lambda c: c.__setitem__((0, 0), 0)),
    ("a ragged right edge", lambda c: (c.__setitem__((1, 4), 5), c.__setitem__((1, 5), 1))),
  ],
)
def test_malformed_canvases_decode_to_none(name, change):
  assert _broken(change) is None, name


def test_encoding_refuses_what_does_not_fit():
  with pytest.raises(ValueError, match="does not fit a 30x30 canvas"):
    arc_canvas.encode(_grid((3, 3)), row=28)
  with pytest.raises(ValueError, match="does not fit a 4x4 canvas"):
    arc_canvas.encode(_grid((5, 1)), side=4)
  with pytest.raises(ValueError, match="must be 0..9"):
    arc_canvas.encode(np.array([[10]]))
