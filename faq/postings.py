"""A sparse row matrix stored by column, for dot products with sparse query vectors.

The recognised phrasings (``faq.heard``) are thousands of short documents over tens of
thousands of n-gram features; as a dense float32 matrix they would take hundreds of
megabytes for a few dozen non-zeros per row. Stored by column (the features a query has),
a similarity is one gather and one ``bincount``.
"""

from __future__ import annotations

import numpy as np


class ColumnPostings:
    """Rows of weights, kept as per-column lists of (row, weight)."""

    def __init__(self, rows: list[tuple[np.ndarray, np.ndarray]], n_columns: int):
        """``rows``: (column ids, weights) of each row."""
        self.n_rows = len(rows)
        empty = np.zeros(0, dtype=np.int64)
        cols = np.concatenate([empty, *(ids for ids, _ in rows)]).astype(np.int64)
        row_of = np.repeat(np.arange(len(rows)), [len(ids) for ids, _ in rows]).astype(np.int64)
        weights = np.concatenate([empty, *(w for _, w in rows)]).astype(np.float32)
        order = np.argsort(cols, kind="stable")
        self.row = row_of[order]
        self.weight = weights[order]
        self.start = np.zeros(n_columns + 1, dtype=np.int64)
        np.cumsum(np.bincount(cols, minlength=n_columns), out=self.start[1:])

    def dot(self, columns: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Each row's dot product with the sparse vector (``columns``, ``values``)."""
        starts = self.start[columns]
        lengths = self.start[columns + 1] - starts
        total = int(lengths.sum())
        if total == 0:
            return np.zeros(self.n_rows, dtype=np.float32)
        # Positions of every posting of the query's columns, without a Python loop.
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        positions = offsets + np.arange(total)
        contributions = self.weight[positions] * np.repeat(values, lengths)
        return np.bincount(
            self.row[positions], weights=contributions, minlength=self.n_rows
        ).astype(np.float32)

    def row_vector(self, row: int) -> np.ndarray:
        """One row as a dense vector (slow: for holding a document out, not for matching)."""
        out = np.zeros(len(self.start) - 1, dtype=np.float32)
        mine = self.row == row
        columns = np.searchsorted(self.start, np.flatnonzero(mine), side="right") - 1
        out[columns] = self.weight[mine]
        return out
