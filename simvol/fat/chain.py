"""A file's cluster chain held as extents, so mapping an offset costs O(log extents), not O(file size)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator


class Chain:
    __slots__ = ("_cum", "extents", "total")

    def __init__(self, extents: list[tuple[int, int]] | None = None) -> None:
        self.extents: list[tuple[int, int]] = []
        self._cum: list[int] = []  # clusters before each extent
        self.total = 0
        if extents:
            self.extend(extents)

    def extend(self, extents: list[tuple[int, int]]) -> None:
        for start, length in extents:
            if self.extents:
                ls, ll = self.extents[-1]
                if ls + ll == start:  # contiguous growth: merge
                    self.extents[-1] = (ls, ll + length)
                    self.total += length
                    continue
            self.extents.append((start, length))
            self._cum.append(self.total)
            self.total += length

    @property
    def first(self) -> int:
        return self.extents[0][0] if self.extents else 0

    @property
    def last(self) -> int:
        if not self.extents:
            return 0
        s, n = self.extents[-1]
        return s + n - 1

    def cluster(self, index: int) -> int:
        i = bisect_right(self._cum, index) - 1
        s, _ = self.extents[i]
        return s + index - self._cum[i]

    def runs(self, first_index: int, count: int) -> Iterator[tuple[int, int]]:
        """Yield (cluster, run_length) covering ``count`` clusters from chain index ``first_index``."""
        i = bisect_right(self._cum, first_index) - 1
        idx = first_index
        while count > 0:
            s, n = self.extents[i]
            within = idx - self._cum[i]
            take = min(n - within, count)
            yield s + within, take
            count -= take
            idx += take
            i += 1

    def split(self, keep: int) -> list[tuple[int, int]]:
        """Keep the first ``keep`` clusters; return the extents cut off."""
        if keep >= self.total:
            return []
        if keep == 0:
            cut = self.extents
            self.extents, self._cum, self.total = [], [], 0
            return cut
        i = bisect_right(self._cum, keep - 1) - 1
        s, n = self.extents[i]
        within = keep - self._cum[i]
        cut = []
        if within < n:
            cut.append((s + within, n - within))
        cut.extend(self.extents[i + 1 :])
        self.extents = [*self.extents[:i], (s, within)]
        self._cum = self._cum[: i + 1]
        self.total = keep
        return cut
