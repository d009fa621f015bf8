"""Reading tensorflow-datasets data that is already prepared, never downloading it.

`tfds.data_source` downloads and prepares a dataset it does not find, which
needs the internet and TensorFlow (contlearn installs neither). contlearn's
readers open a split with `download=False` instead, so a dataset that is not
there stops the run at once with one line naming it and the folder searched,
and how to get the data, in place of retried downloads and a misleading
error. Under `tfds.testing.mock_data` the mock answers as before.
"""

from __future__ import annotations

from contlearn.errors import DataError

PREPARE = "tfds.builder({name!r}).download_and_prepare(file_format='array_record'), which needs TensorFlow"


def data_source(name: str, split: str, data_dir: str | None = None):
  """`tfds.data_source(name, split=split, data_dir=data_dir)` of prepared data, without a download.

  Args:
    name: a tfds dataset name, e.g. "mnist" or "tiny_shakespeare".
    split: e.g. "train".
    data_dir: tfds' data folder (None: its default, `TFDS_DATA_DIR` or
      ~/tensorflow_datasets).

  Returns:
    The split as a random-access source of records (dicts of numpy values).

  Raises:
    DataError: the split cannot be opened (not prepared in array_record
      format in the folder searched, or another tfds error), in one line.
  """
  import tensorflow_datasets as tfds  # imported here: slow, and only tfds users need it

  try:
    return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except Exception as e:  # tfds raises many types (NotImplementedError for data it cannot find)
    try:
      where = tfds.builder(name, data_dir=data_dir).data_dir
    except Exception:  # an unknown name: tfds' own message says so
      where = data_dir or "tfds' data folder"
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    raise DataError(
      f"tfds dataset {name!r} split {split!r} is not readable in {where} ({reason}): contlearn reads tfds data "
      f"already prepared in array_record format and never downloads; prepare it with {PREPARE.format(name=name)}"
    ) from e
