"""Connected components of duplicate pairs: a readable union-find and a vectorized one.

Notable:
- `UnionFind` is the textbook structure (path halving, union by smaller root) used by the
  file-level reference implementation.
- `connected_components` is the same algorithm over numpy arrays for millions of pairs: every
  round hooks the larger root of each edge under the smaller one (np.minimum.at), then jumps
  pointers until every node points at its root. Roots only ever decrease, so it terminates, and
  each component is labelled by its smallest node: deterministic whatever the pair order.
"""

from __future__ import annotations

import numpy as np


class UnionFind:
    """Disjoint sets over 0..n-1 whose representative is always the smallest member."""

    def __init__(self, size: int) -> None:
        self.parent = list(range(size))

    def find(self, node: int) -> int:
        while self.parent[node] != node:
            self.parent[node] = self.parent[self.parent[node]]
            node = self.parent[node]
        return node

    def union(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            low, high = min(root_a, root_b), max(root_a, root_b)
            self.parent[high] = low


def connected_components(num_nodes: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Label of each node (the smallest node of its component) given undirected edges."""
    parent = np.arange(num_nodes, dtype=np.int64)
    left = np.asarray(left, dtype=np.int64)
    right = np.asarray(right, dtype=np.int64)
    while len(left):
        root_left, root_right = parent[left], parent[right]
        differ = root_left != root_right
        if not differ.any():
            break
        low = np.minimum(root_left[differ], root_right[differ])
        high = np.maximum(root_left[differ], root_right[differ])
        np.minimum.at(parent, high, low)
        while True:  # pointer jumping: parent[x] <= x always, so this converges
            grandparent = parent[parent]
            if np.array_equal(grandparent, parent):
                break
            parent = grandparent
        left, right = left[differ], right[differ]
    return parent
