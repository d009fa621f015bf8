"""tfds data prepared in array_record format is read without TensorFlow and without mock_data.

tfds prepares a generator-based dataset without TensorFlow, so these tests
build two small ones in a temporary data folder (a text set and an image
classification set) and read them back through contlearn's readers, as a
fresh install reads data that was prepared beforehand.
"""

import numpy as np
import pytest
import tensorflow_datasets as tfds
from lanes import lane_bytes

from contlearn import prepared_tfds
from contlearn.cl.datasets import _read_source
from contlearn.config import DataConfig
from contlearn.stream import build_stream

TEXTS = [f"record {i}: all the world's a stage.".encode() for i in range(12)]
IMAGES = (20 * np.arange(10)[:, None] + np.arange(36)).astype(np.uint8).reshape(10, 6, 6, 1)  # image i starts at 20 i
LABELS = [i % 3 for i in range(10)]


class ContlearnTestText(tfds.core.GeneratorBasedBuilder):
  """12 records of one text field, in one split."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({"text": tfds.features.Text()}))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples()}

  def _generate_examples(self):
    for i, text in enumerate(TEXTS):
      yield i, {"text": text.decode()}


class ContlearnTestDigits(tfds.core.GeneratorBasedBuilder):
  """10 images of 6x6x1 with labels of 3 classes, the same rows in train and test."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    features = {"image": tfds.features.Image(shape=(6, 6, 1)), "label": tfds.features.ClassLabel(num_classes=3)}
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(), "test": self._generate_examples()}

  def _generate_examples(self):
    from PIL import Image  # encoded by PIL: tfds encodes a numpy image with TensorFlow

    for i, (image, label) in enumerate(zip(IMAGES, LABELS)):
      yield i, {"image": Image.fromarray(image[..., 0]), "label": label}


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
  """tfds' default data folder, here a temporary one holding the two sets, prepared."""
  from tensorflow_datasets.core import constants

  for builder in (ContlearnTestText, ContlearnTestDigits):
    builder(data_dir=str(tmp_path), file_format="array_record").download_and_prepare()
  monkeypatch.setattr(constants, "DATA_DIR", str(tmp_path))
  return tmp_path


def test_a_prepared_text_set_streams_its_records_in_order(data_dir):
  stream = build_stream(DataConfig(source="tfds", tfds_name="contlearn_test_text", batch=2, seq=8, steps=2))
  assert stream.targets() is None  # read lazily: 12 records for 2 lanes
  lanes, _ = lane_bytes(stream)
  docs = [stream.docs[i] for i in range(len(TEXTS))]
  assert sorted(docs) == sorted(t + b"\n" for t in TEXTS)  # tfds keeps every record (in its own order)
  assert lanes == [b"".join(docs[:6]), b"".join(docs[6:])]


def test_a_prepared_image_set_reads_as_the_classic_cl_arrays(data_dir):
  x, y = _read_source(prepared_tfds.data_source("contlearn_test_digits", "train"))
  assert x.shape == (10, 6, 6, 1) and x.dtype == np.float32
  which = np.rint(x[:, 0, 0, 0] * 255).astype(int) // 20  # tfds shuffles the records; the first pixel names each
  assert sorted(which) == list(range(10))
  np.testing.assert_array_equal(x, IMAGES[which] / np.float32(255.0))
  np.testing.assert_array_equal(y, np.asarray(LABELS)[which])
