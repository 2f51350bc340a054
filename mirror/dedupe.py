"""Near-duplicate detection: which stored images are the same picture, which look alike.

Input: `ImageInfo`s (one per sha256; identical bytes are already one asset), the
`DedupeThresholds` from Settings and optional human `Decisions`.
Output: `DuplicateLink`s. Tier "duplicate": `sha256` is the same picture as `canonical` and its
references may be rewritten to it. Tier "similar": the two look alike; recorded for a person,
never merged.

A pair is a **duplicate** only when every signal agrees:
  - phash Hamming distance ≤ `duplicate_distance`, and
  - dhash Hamming distance ≤ `dhash_distance` (a second, differently built route), and
  - the tiny RGB thumbnails differ by ≤ `color_distance` (mean absolute difference, 0–255):
    perceptual hashes see luminance structure only, so dark/light editions, colourways and
    grey versions of one photo collide on phash and are told apart here, and
  - the 32×32 grey structure signatures align (one shift + scale per axis) to within
    `structure_distance` grey levels: this tells a 2–5% crop from a stereo pair or a burst
    shot, which every 64-bit hash calls identical, and
  - neither picture is flat (near-uniform: its hash bits are noise), animated (a first frame
    says nothing about the rest of the animation), and both agree on transparency (a
    transparent logo and the same logo on white do not look the same on a dark page).
A pair within `similar_distance` that is not a duplicate is **similar**.

Each picture is attached to its *nearest* canonical, never chained (A~B, B~C does not put C
with A unless C~A itself). The canonical copy of a group is fixed by one documented rule
(`canonical_order`): most pixels; then, among copies in the same format, the best quality
(JPEG quality estimated from its quantization tables; unknown counts lowest); then first seen
(input order); then the smallest sha256.

`HashIndex` answers Hamming-range queries over a flat uint64 array with `np.bitwise_count`;
batch queries (`query_many`, `pairs_within`) use multi-index hashing (the 64 bits split into
m substrings with a pigeonhole radius per substring), choosing m from a cost model, or a
blocked brute force when that is cheaper.
"""

from __future__ import annotations

import base64
import itertools
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from math import comb
from pathlib import Path

import numpy as np

from mirror.records import DedupeThresholds, DuplicateLink, ImageInfo, ImagingOptions

HashLike = int | str | np.integer


def hash_to_int(value: HashLike) -> int:
    """A 64-bit hash given as 16 hex digits (imagehash's str form) or an int."""
    return int(value, 16) if isinstance(value, str) else int(value)


def _as_uint64(values: Iterable[HashLike] | np.ndarray) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values.astype(np.uint64, copy=False).ravel()
    return np.fromiter((hash_to_int(v) for v in values), dtype=np.uint64)


@lru_cache(maxsize=64)
def _flip_masks(width: int, radius: int) -> np.ndarray:
    """All `width`-bit masks with at most `radius` bits set (the Hamming ball's offsets)."""
    masks = [0]
    for k in range(1, radius + 1):
        for bits in itertools.combinations(range(width), k):
            masks.append(sum(1 << b for b in bits))
    return np.array(masks, dtype=np.int64)


def _ball(width: int, radius: int) -> int:
    return sum(comb(width, k) for k in range(radius + 1)) if radius >= 0 else 0


def _chunk_plan(m: int, max_distance: int) -> list[tuple[int, int, int]]:
    """(shift, width, radius) per substring for m substrings at `max_distance`.

    Pigeonhole (Norouzi et al.): with d = m·r + a, two hashes within d agree to within r bits
    on one of the first a+1 substrings or to within r−1 bits on one of the others.
    """
    base, extra = divmod(64, m)
    r, a = divmod(max_distance, m)
    plan, shift = [], 0
    for c in range(m):
        width = base + (1 if c < extra else 0)
        plan.append((shift, width, r if c <= a else r - 1))
        shift += width
    return plan


# Relative costs in the planner, measured on 1M random hashes: a lookup in a cache-resident
# table (≤ 2^16 entries) or in a larger one (cache misses), a candidate check (expand, read,
# xor, popcount), and one element of a brute-force scan (streaming, vectorised).
_LOOKUP_COST, _BIG_LOOKUP_COST, _CANDIDATE_COST, _SCAN_COST = 4.0, 16.0, 3.0, 0.25
_MAX_SUBSTRING_BITS = 22  # direct-address tables up to 4M entries


class HashIndex:
    """A growable flat array of 64-bit hashes with Hamming-range search.

    Indices are insertion positions (0, 1, 2, ...). `query` scans the whole array with
    `np.bitwise_count` (about a millisecond per million hashes); `query_many` and
    `pairs_within` answer many queries at once with multi-index hashing.
    """

    def __init__(self, hashes: Iterable[HashLike] | np.ndarray = ()) -> None:
        self._data = np.empty(0, dtype=np.uint64)
        self._size = 0
        self._tables: dict[tuple[int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.extend(hashes)

    def __len__(self) -> int:
        return self._size

    @property
    def hashes(self) -> np.ndarray:
        """The stored hashes (a read-only view, index order)."""
        view = self._data[: self._size]
        view.flags.writeable = False
        return view

    def add(self, value: HashLike) -> int:
        """Append one hash; returns its index."""
        self.extend(np.array([hash_to_int(value)], dtype=np.uint64))
        return self._size - 1

    def extend(self, values: Iterable[HashLike] | np.ndarray) -> range:
        """Append many hashes; returns their index range."""
        new = _as_uint64(values)
        start = self._size
        if start + len(new) > len(self._data):
            grown = np.empty(max(start + len(new), 2 * len(self._data), 1024), dtype=np.uint64)
            grown[:start] = self._data[:start]
            self._data = grown
        self._data[start : start + len(new)] = new
        self._size += len(new)
        if len(new):
            self._tables.clear()  # substring tables are rebuilt lazily by the next batch query
        return range(start, self._size)

    def query(self, value: HashLike, max_distance: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices within `max_distance` of `value` and their distances, nearest first."""
        q = np.uint64(hash_to_int(value))
        dist = np.bitwise_count(self._data[: self._size] ^ q)
        idx = np.flatnonzero(dist <= max_distance)
        d = dist[idx]
        order = np.lexsort((idx, d))
        return idx[order], d[order].astype(np.int64)

    def query_many(
        self, values: Iterable[HashLike] | np.ndarray, max_distance: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every (query position, index, distance) with distance ≤ `max_distance`.

        Sorted by query position, then distance, then index.
        """
        queries = _as_uint64(values)
        empty = (np.empty(0, np.int64),) * 3
        if not len(queries) or not self._size or max_distance < 0:
            return empty
        m = self._choose_substrings(max_distance)
        if m == 0:
            parts = self._brute_force(queries, max_distance)
        else:
            parts = self._multi_index(queries, max_distance, m)
        q, i, d = parts
        order = np.lexsort((i, d, q))
        return q[order], i[order], d[order]

    def pairs_within(self, max_distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every pair of stored hashes (i < j) within `max_distance`, as (i, j, distance)."""
        data = self._data[: self._size]
        if max_distance < 0 or self._size < 2:
            return (np.empty(0, np.int64),) * 3
        m = self._choose_substrings(max_distance)
        if m == 0:
            q, i, d = self._brute_force(data, max_distance)
        else:
            # The self-join meets each pair from one side only (the smaller substring), which
            # may be the later index: normalise to (smaller, larger) before dropping halves.
            q, i, d = self._multi_index(data, max_distance, m, self_join=True)
            q, i = np.minimum(q, i), np.maximum(q, i)
        keep = q < i
        q, i, d = q[keep], i[keep], d[keep]
        key, first = np.unique(q * self._size + i, return_index=True)
        return key // self._size, key % self._size, d[first]

    # -- planning ---------------------------------------------------------------------------

    def _choose_substrings(self, max_distance: int) -> int:
        """m for multi-index hashing, or 0 when a brute-force scan is cheaper (per query)."""
        n = self._size
        best_m, best_cost = 0, n * _SCAN_COST
        for m in range(3, 9):
            plan = _chunk_plan(m, max_distance)
            if max(w for _, w, _ in plan) > _MAX_SUBSTRING_BITS:
                continue
            cost = sum(
                _ball(w, r)
                * ((_LOOKUP_COST if w <= 16 else _BIG_LOOKUP_COST) + _CANDIDATE_COST * n / 2.0**w)
                for _, w, r in plan
                if r >= 0
            )
            if cost < best_cost:
                best_m, best_cost = m, cost
        return best_m

    def _table(self, shift: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(order, sorted hashes, offsets) for one substring: indices sorted by substring
        value, the hashes in that order (so a bucket is a contiguous slice), and CSR offsets
        per substring value."""
        key = (shift, width)
        if key not in self._tables:
            data = self._data[: self._size]
            sub = ((data >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.int64)
            order = np.argsort(sub, kind="stable")
            counts = np.bincount(sub, minlength=1 << width)
            offsets = np.zeros((1 << width) + 1, dtype=np.int64)
            np.cumsum(counts, out=offsets[1:])
            self._tables[key] = (order, data[order], offsets)
        return self._tables[key]

    # -- search -----------------------------------------------------------------------------

    def _brute_force(
        self, queries: np.ndarray, max_distance: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        data = self._data[: self._size]
        block = max(1, (1 << 22) // max(1, self._size))
        qs, ix, ds = [], [], []
        for start in range(0, len(queries), block):
            dist = np.bitwise_count(queries[start : start + block, None] ^ data[None, :])
            q, i = np.nonzero(dist <= max_distance)
            qs.append(q + start)
            ix.append(i)
            ds.append(dist[q, i])
        return (
            np.concatenate(qs).astype(np.int64),
            np.concatenate(ix).astype(np.int64),
            np.concatenate(ds).astype(np.int64),
        )

    def _multi_index(
        self, queries: np.ndarray, max_distance: int, m: int, self_join: bool = False
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """MIH search. `self_join`: the queries are the stored hashes themselves, so each
        unordered pair need only be looked up from the side with the smaller substring."""
        n = self._size
        found: list[np.ndarray] = []
        dists: list[np.ndarray] = []
        for shift, width, radius in _chunk_plan(m, max_distance):
            if radius < 0:
                continue
            order, sorted_data, offsets = self._table(shift, width)
            flips = _flip_masks(width, radius)
            expected = len(flips) * (1 + n / 2.0**width)
            batch = max(1, int(1_000_000 // expected))  # ~8 MB arrays: stay in cache
            mask = np.uint64((1 << width) - 1)
            for start in range(0, len(queries), batch):
                qb = queries[start : start + batch]
                sub = ((qb >> np.uint64(shift)) & mask).astype(np.int64)
                keys = sub[:, None] ^ flips[None, :]
                if self_join:  # (x→y) and (y→x) meet the same pair: keep the upward one
                    rows, cols = np.nonzero(keys >= sub[:, None])
                    keys = keys[rows, cols]
                else:
                    rows = np.repeat(np.arange(len(sub)), len(flips))
                    keys = keys.ravel()
                starts = offsets[keys]
                counts = offsets[keys + 1] - starts
                hit = np.flatnonzero(counts)
                if not len(hit):
                    continue
                starts, counts = starts[hit], counts[hit]
                qpos = rows[hit] + start
                total = int(counts.sum())
                # Expand each [start, start+count) run into positions, without a Python loop.
                run_first = np.cumsum(counts) - counts
                pos = np.arange(total, dtype=np.int64) + np.repeat(starts - run_first, counts)
                # Buckets are contiguous in sorted_data: a near-sequential read, no gather.
                dist = np.bitwise_count(sorted_data[pos] ^ np.repeat(queries[qpos], counts))
                ok = np.flatnonzero(dist <= max_distance)
                qrep = np.repeat(qpos, counts)[ok] if len(ok) else ok
                found.append(qrep * n + order[pos[ok]])
                dists.append(dist[ok])
        if not found:
            return (np.empty(0, np.int64),) * 3
        keys_all = np.concatenate(found)
        dist_all = np.concatenate(dists).astype(np.int64)
        keys_all, first = np.unique(keys_all, return_index=True)  # one pair, many substrings
        return keys_all // n, keys_all % n, dist_all[first]


@dataclass(frozen=True)
class Decisions:
    """A person's verdicts on pairs of sha256s: forced `same` picture, or forced `different`.

    Pairs are unordered; `normalized()` sorts each pair so lookups need not care.
    """

    same: frozenset[tuple[str, str]] = frozenset()
    different: frozenset[tuple[str, str]] = frozenset()

    def normalized(self) -> Decisions:
        return Decisions(
            frozenset(_pair(a, b) for a, b in self.same),
            frozenset(_pair(a, b) for a, b in self.different),
        )


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def canonical_order(infos: Sequence[ImageInfo]) -> list[int]:
    """Positions of `infos` best-first by the canonical rule (see the module docstring).

    "Best quality within a format" is made a total order by grouping copies of the same
    pixel count by format (formats in order of first appearance) and ranking by quality
    inside each format, so the rule stays transitive when formats mix.
    """
    first_of_format: dict[tuple[int, str], int] = {}
    for pos, info in enumerate(infos):
        first_of_format.setdefault((info.width * info.height, info.format), pos)

    def key(pos: int) -> tuple[int, int, int, int, str]:
        info = infos[pos]
        pixels = info.width * info.height
        quality = info.quality if info.quality is not None else -1
        return (-pixels, first_of_format[(pixels, info.format)], -quality, pos, info.sha256)

    return sorted(range(len(infos)), key=key)


def choose_canonical(infos: Sequence[ImageInfo]) -> ImageInfo:
    """The canonical copy among `infos` (which are taken to be one picture)."""
    if not infos:
        raise ValueError("choose_canonical needs at least one ImageInfo")
    return infos[canonical_order(infos)[0]]


_LUMA = np.array([0.299, 0.587, 0.114])


def _grid(signature: bytes, side: int) -> np.ndarray:
    """The 8×8 RGB signature averaged down to side×side cells (float, 0–255)."""
    grid = np.frombuffer(signature, np.uint8).reshape(8, 8, 3).astype(np.float64)
    f = 8 // side
    return grid.reshape(side, f, side, f, 3).mean(axis=(1, 3))


def color_distance(a: str, b: str) -> float:
    """How differently two pictures are lit and coloured (0–255 units; inf if incomparable).

    The larger of two measures on the 8×8 RGB signatures:
      brightness  mean |ΔY| over 2×2 quadrants: dark/light editions move every quadrant,
                  while a 5% crop or a watermark moves them a little;
      colour      mean chroma distance (Cb, Cr as B−Y, R−Y) over 4×4 cells: grey copies,
                  hue shifts and colourways move it, re-encoding and resizing do not.
    Coarse grids on purpose: a few-percent crop shifts content by a fraction of a cell.
    """
    try:
        x, y = bytes.fromhex(a), bytes.fromhex(b)
    except (ValueError, TypeError):
        return float("inf")
    if len(x) != len(y) or len(x) != 8 * 8 * 3:
        return float("inf")
    luma = float(np.abs(_grid(x, 2) @ _LUMA - _grid(y, 2) @ _LUMA).mean())
    cx, cy = _grid(x, 4), _grid(y, 4)
    yx, yy = cx @ _LUMA, cy @ _LUMA
    chroma = np.hypot((cx[..., 2] - yx) - (cy[..., 2] - yy), (cx[..., 0] - yx) - (cy[..., 0] - yy))
    return max(luma, float(chroma.mean()))


_SIDE = 32  # the structure signature is 32×32 grey (mirror.imaging.STRUCTURE_GRID)
# The alignments tried per axis: scale (a crop of up to ~12% per axis shows the rest enlarged,
# or the other way round) × offset in signature pixels.
_SCALES = np.arange(0.88, 1.1201, 0.02)
_OFFSETS = np.arange(-4.0, 4.01, 0.5)


def _resampler(scale: float, offset: float) -> tuple[np.ndarray, np.ndarray]:
    """Linear-interpolation matrix mapping a signature axis to a shifted/scaled one, plus
    which output samples fall inside the source."""
    x = offset + scale * (np.arange(_SIDE) + 0.5) - 0.5
    inside = (x >= -0.5) & (x <= _SIDE - 0.5)
    xc = np.clip(x, 0, _SIDE - 1)
    x0 = np.floor(xc).astype(np.int64)
    x1 = np.minimum(x0 + 1, _SIDE - 1)
    frac = xc - x0
    w = np.zeros((_SIDE, _SIDE))
    np.add.at(w, (np.arange(_SIDE), x0), 1 - frac)
    np.add.at(w, (np.arange(_SIDE), x1), frac)
    return w, inside


_BANK = [_resampler(s, o) for s in _SCALES for o in _OFFSETS]
# float32 throughout the search: signatures are 8-bit grey levels and the thresholds are whole
# grey levels, so single precision decides the same, with half the memory traffic and sgemm.
_W = np.stack([w for w, _ in _BANK]).astype(np.float32)  # (K, 32, 32)
# The same bank as one (K·32, 32) matrix: every alignment of an axis is then a single GEMM
# (BLAS) instead of an einsum over K small products, ~50x less time per pair.
_W_FLAT = np.ascontiguousarray(_W.reshape(-1, _SIDE))
_W_FLAT_T = np.ascontiguousarray(_W_FLAT.T)
_INSIDE = np.stack([v for _, v in _BANK])  # (K, 32)
_INSIDE_F = _INSIDE.astype(np.float32)
_INSIDE_COUNT = _INSIDE_F.sum(axis=1)  # (K,)
_IDENTITY = int(np.argmin([abs(s - 1) + abs(o) for s in _SCALES for o in _OFFSETS]))


def _signature(structure: str) -> np.ndarray | None:
    try:
        raw = base64.b64decode(structure, validate=True)
    except (ValueError, TypeError):
        return None
    if len(raw) != _SIDE * _SIDE:
        return None
    return np.frombuffer(raw, np.uint8).reshape(_SIDE, _SIDE).astype(np.float32)


def structure_residual(a: str, b: str) -> float:
    """Mean absolute grey difference (0–255) of two structure signatures after the best
    alignment (independent scale and offset per axis, either picture inside the other);
    inf when a signature is missing.

    Resizing, re-encoding, watermarks and 2–5% crops align to a few grey levels; a stereo
    pair or a burst shot cannot be aligned by one shift+scale (parallax, motion), so it
    keeps a large residual even when every 64-bit hash agrees.
    """
    return _residual(a, b, None)


def _residual(a: str, b: str, enough: float | None) -> float:
    """`structure_residual`, stopping early once a value ≤ `enough` is found (the caller
    only asks "within the threshold?", and a duplicate's first alignment usually answers)."""
    x, y = _signature(a), _signature(b)
    if x is None or y is None:
        return float("inf")
    direct = float(np.abs(x - y).mean())
    if direct <= 2.0:  # resized or re-encoded: no search needed
        return direct
    if enough is not None and direct <= enough:
        return direct
    forward = _aligned(x, y, enough)
    if enough is not None and forward <= enough:
        return forward
    return min(direct, forward, _aligned(y, x, enough))


def _aligned(
    src: np.ndarray, target: np.ndarray, enough: float | None = None, rounds: int = 2
) -> float:
    """Best residual of target ≈ Wy · src · Wxᵀ, searching x then y alternately.

    Each step can only lower the residual (the current alignment is among its candidates), so
    the search stops at the first step that reaches `enough`: the caller's verdict is the same
    (up to float rounding).

    Each search is one GEMM over the whole alignment bank; the overlap masks are separable
    (rows inside × columns inside), so the masked sums are two small products instead of a
    (K, 32, 32) mask.
    """
    iy = ix = _IDENTITY
    best = float("inf")
    need = 0.7 * _SIDE * _SIDE  # the overlap must cover most of the picture
    for _ in range(rounds):
        rows = _W[iy] @ src  # y fixed; try every x alignment at once
        cand = (rows @ _W_FLAT_T).reshape(_SIDE, -1, _SIDE)  # [i, k, u] = Σ_j rows[i,j]·W[k,u,j]
        diff = np.abs(np.subtract(cand, target[:, None, :], out=cand), out=cand)
        inside_y = _INSIDE_F[iy]
        # rows inside first (one GEMV over all alignments), then each alignment's columns
        per_column = (inside_y @ diff.reshape(_SIDE, -1)).reshape(-1, _SIDE)  # (K, 32)
        sums = (per_column * _INSIDE_F).sum(axis=1)  # (K,)
        ix, best = _pick(sums, inside_y.sum() * _INSIDE_COUNT, need)
        if enough is not None and best <= enough:
            return best
        cols = src @ _W[ix].T  # x fixed; try every y alignment
        cand = (_W_FLAT @ cols).reshape(-1, _SIDE, _SIDE)  # [k, v, j] = Σ_i W[k,v,i]·cols[i,j]
        diff = np.abs(np.subtract(cand, target[None], out=cand), out=cand)
        inside_x = _INSIDE_F[ix]
        sums = ((diff @ inside_x) * _INSIDE_F).sum(axis=1)  # (K,)
        iy, best = _pick(sums, _INSIDE_COUNT * inside_x.sum(), need)
        if enough is not None and best <= enough:
            return best
    return best


def _pick(sums: np.ndarray, count: np.ndarray, need: float) -> tuple[int, float]:
    score = sums / np.maximum(count, 1)
    score[count < need] = np.inf
    k = int(np.argmin(score))
    return k, float(score[k])


def find_duplicates(
    infos: Sequence[ImageInfo],
    thresholds: DedupeThresholds,
    decisions: Decisions | None = None,
) -> list[DuplicateLink]:
    """Duplicate and similar links among `infos` (see the module docstring for the rules).

    Duplicate links come first (in canonical-rule order within each group), then similar
    links; every similar link points from the later picture in input order to the earlier.
    The result depends only on the inputs, their order and the thresholds.
    """
    items: list[ImageInfo] = []
    position: dict[str, int] = {}
    for info in infos:
        if info.sha256 not in position:
            position[info.sha256] = len(items)
            items.append(info)
    decided = (decisions or Decisions()).normalized()
    n = len(items)
    if n < 2:
        return []

    pairs = _candidate_pairs(items, thresholds)
    for a, b in decided.same:  # a person said so: linked whatever the hashes say
        if a in position and b in position and a != b:
            i, j = sorted((position[a], position[b]))
            pairs.setdefault((i, j), _PairFacts(_phash_distance(items[i], items[j]), False))
    for a, b in decided.different:
        if a in position and b in position:
            pairs.pop(tuple(sorted((position[a], position[b]))), None)  # type: ignore[arg-type]

    forced = {
        tuple(sorted((position[a], position[b])))
        for a, b in decided.same
        if a in position and b in position and a != b
    }
    dup_edges: dict[int, dict[int, int]] = {}
    for (i, j), facts in pairs.items():
        if facts.duplicate or (i, j) in forced:
            dup_edges.setdefault(i, {})[j] = facts.distance
            dup_edges.setdefault(j, {})[i] = facts.distance

    canonical_of = _attach(items, dup_edges, forced)

    links: list[DuplicateLink] = []
    for member, canon in canonical_of.items():
        if member != canon:
            links.append(
                DuplicateLink(
                    sha256=items[member].sha256,
                    canonical=items[canon].sha256,
                    tier="duplicate",
                    distance=_phash_distance(items[member], items[canon]),
                )
            )
    links.sort(key=lambda link: (position[link.canonical], position[link.sha256]))

    similar: list[DuplicateLink] = []
    for (i, j), facts in sorted(pairs.items()):
        if facts.distance > thresholds.similar_distance and (i, j) not in forced:
            continue
        if canonical_of.get(i, i) == canonical_of.get(j, j):
            continue  # already one group
        similar.append(
            DuplicateLink(
                sha256=items[j].sha256,
                canonical=items[i].sha256,
                tier="similar",
                distance=facts.distance,
            )
        )
    return links + similar


@dataclass(frozen=True)
class _PairFacts:
    distance: int  # phash Hamming distance
    duplicate: bool  # every signal agrees


def _phash_distance(a: ImageInfo, b: ImageInfo) -> int:
    return int((hash_to_int(a.phash) ^ hash_to_int(b.phash)).bit_count())


def _candidate_pairs(
    items: Sequence[ImageInfo], thresholds: DedupeThresholds
) -> dict[tuple[int, int], _PairFacts]:
    """Pairs (i < j) within the similar distance, with the duplicate verdict for each."""
    usable = [k for k, info in enumerate(items) if not info.flat]
    if len(usable) < 2:
        return {}
    index = HashIndex(items[k].phash for k in usable)
    reach = max(thresholds.similar_distance, thresholds.duplicate_distance)
    qi, qj, dist = index.pairs_within(reach)
    pairs: dict[tuple[int, int], _PairFacts] = {}
    to_align: list[tuple[int, int]] = []  # every cheap signal agrees: the structure decides
    for a, b, d in zip(qi.tolist(), qj.tolist(), dist.tolist(), strict=True):
        i, j = usable[a], usable[b]
        x, y = items[i], items[j]
        pairs[(i, j)] = _PairFacts(d, False)
        if (
            d <= thresholds.duplicate_distance
            and (hash_to_int(x.dhash) ^ hash_to_int(y.dhash)).bit_count()
            <= thresholds.dhash_distance
            and color_distance(x.color, y.color) <= thresholds.color_distance
            and x.frames == 1
            and y.frames == 1
            and x.has_alpha == y.has_alpha
        ):
            to_align.append((i, j))
    limit = thresholds.structure_distance

    def aligned(pair: tuple[int, int]) -> bool:
        return _residual(items[pair[0]].structure, items[pair[1]].structure, limit) <= limit

    for pair, same in zip(to_align, _map_threads(aligned, to_align), strict=True):
        if same:
            pairs[pair] = _PairFacts(pairs[pair].distance, True)
    return pairs


# Below this many structure checks, starting threads costs more than it saves.
_THREADED_CHECKS = 32


def _map_threads(
    fn: Callable[[tuple[int, int]], bool], items: Sequence[tuple[int, int]]
) -> list[bool]:
    """`[fn(x) for x in items]`, on up to 4 cores when there are enough items.

    A structure check is numpy GEMMs and ufuncs, which release the GIL: two threads took the
    273 checks of a 2,000-image run from 0.175 to 0.10 s. A run calls dedupe after its image
    workers are done, so the cores are free.
    """
    from mirror.pool import default_workers

    workers = min(default_workers(), 4)
    if workers < 2 or len(items) < _THREADED_CHECKS:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items))


def _attach(
    items: Sequence[ImageInfo],
    edges: dict[int, dict[int, int]],
    forced: set[tuple[int, ...]],
) -> dict[int, int]:
    """Member → canonical for every picture with a duplicate edge (canonicals map to self).

    Per connected group, pictures are visited best-first by the canonical rule; each joins
    the nearest canonical it is itself a duplicate of (a person's "same" first), or becomes a
    canonical. A duplicate never becomes anyone's canonical, so nothing chains.
    """
    canonical_of: dict[int, int] = {}
    seen: set[int] = set()
    for start in sorted(edges):
        if start in seen:
            continue
        group, stack = [], [start]
        seen.add(start)
        while stack:
            node = stack.pop()
            group.append(node)
            for other in edges[node]:
                if other not in seen:
                    seen.add(other)
                    stack.append(other)
        group.sort()
        ranked = [group[k] for k in canonical_order([items[g] for g in group])]
        rank = {node: r for r, node in enumerate(ranked)}
        canonicals: list[int] = []
        for node in ranked:
            choices = []
            for other, distance in edges[node].items():
                if other in canonical_of:
                    target = canonical_of[other]
                    is_forced = tuple(sorted((node, other))) in forced
                    if target == other or is_forced:
                        # a forced "same" with a duplicate joins that duplicate's canonical
                        choices.append((not is_forced, distance, rank[target], target))
            if choices:
                canonical_of[node] = min(choices)[3]
            else:
                canonical_of[node] = node
                canonicals.append(node)
    return canonical_of


# -- grouping local files (the `harvester dedupe` command) ------------------------------------

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".png", ".gif", ".webp", ".avif", ".bmp", ".ico")


@dataclass(frozen=True)
class FileGroup:
    """One picture among local files: its canonical file, files that are the same picture
    (identical bytes count, at distance 0) and files that only look alike."""

    canonical: Path
    duplicates: tuple[tuple[Path, int], ...]  # (file, phash distance to the canonical)
    similar: tuple[tuple[Path, int], ...]  # (file, phash distance to a group member)
    info: ImageInfo


@dataclass(frozen=True)
class FileProblem:
    path: Path
    reason: str  # an ImageFailure reason, or "not-found"
    message: str


def _is_store(folder: Path) -> bool:
    """A harvester store holds `thumbs/<size>/` next to its `<aa>/<bb>/` asset folders."""
    thumbs = folder / "thumbs"
    try:
        return thumbs.is_dir() and any(
            entry.is_dir() and entry.name.isdigit() for entry in thumbs.iterdir()
        )
    except OSError:
        return False


def _walk_image_files(folder: Path) -> list[Path]:
    """Image files (by suffix) under `folder`, sorted. Hidden folders and files are skipped,
    and so are a store's own `thumbs/` and `.tmp/` (every asset would match its thumbnail)."""
    found: list[Path] = []
    for here, dirs, files in os.walk(folder):
        skip = {"thumbs", ".tmp"} if _is_store(Path(here)) else set()
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in skip]
        found.extend(
            Path(here, name)
            for name in files
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES
        )
    return sorted(p for p in found if p.is_file())


def iter_image_files(paths: Sequence[Path]) -> Iterable[Path | FileProblem]:
    """Files named directly, and image files (by suffix) found under folders, in order."""
    for path in paths:
        if path.is_dir():
            yield from _walk_image_files(path)
        elif path.is_file():
            yield path
        else:
            yield FileProblem(path, "not-found", "no such file or folder")


def group_image_files(
    paths: Sequence[Path],
    options: ImagingOptions,
    thresholds: DedupeThresholds,
    workers: int = 0,
) -> tuple[list[FileGroup], list[FileProblem]]:
    """Decode and hash local image files (in a crash-proof process pool, no thumbnails
    written) and group them into pictures. Groups with one file and no look-alikes are
    left out. Unreadable or undecodable files become `FileProblem`s; the rest go on."""
    import dataclasses
    import hashlib
    import tempfile

    from mirror.pool import ImagePool

    problems: list[FileProblem] = []
    paths_by_sha: dict[str, list[Path]] = {}
    for item in iter_image_files(paths):
        if isinstance(item, FileProblem):
            problems.append(item)
            continue
        try:
            sha = hashlib.sha256(item.read_bytes()).hexdigest()
        except OSError as exc:
            problems.append(FileProblem(item, "unreadable", exc.strerror or str(exc)))
            continue
        paths_by_sha.setdefault(sha, []).append(item)

    options = dataclasses.replace(
        options, thumbnails=dataclasses.replace(options.thumbnails, sizes=())
    )
    infos: list[ImageInfo] = []
    with tempfile.TemporaryDirectory(prefix="harvester-dedupe-") as scratch:
        pool_size = min(workers or len(paths_by_sha), len(paths_by_sha)) or 1
        with ImagePool(pool_size, Path(scratch), options) as pool:
            futures = [(sha, pool.submit(ps[0], sha)) for sha, ps in paths_by_sha.items()]
            for sha, future in futures:
                result = future.result()
                if isinstance(result, ImageInfo):
                    infos.append(result)
                else:
                    problems.extend(
                        FileProblem(p, result.reason, result.message) for p in paths_by_sha[sha]
                    )

    links = find_duplicates(infos, thresholds)
    by_sha = {info.sha256: info for info in infos}
    group_of = {link.sha256: link.canonical for link in links if link.tier == "duplicate"}
    dups: dict[str, list[tuple[Path, int]]] = {}
    for link in links:
        if link.tier == "duplicate":
            dups.setdefault(link.canonical, []).extend(
                (p, link.distance) for p in paths_by_sha[link.sha256]
            )
    order = {info.sha256: k for k, info in enumerate(infos)}
    alike: dict[str, dict[Path, int]] = {}
    for link in links:
        if link.tier != "similar":
            continue
        # Show a look-alike under the bigger group (then the earlier one), naming the file
        # from the other side: "photo.jpg's group: darker edition looks alike".
        a, b = link.canonical, link.sha256
        ga, gb = group_of.get(a, a), group_of.get(b, b)
        size_a, size_b = len(dups.get(ga, ())), len(dups.get(gb, ()))
        if (size_b, -order[gb]) > (size_a, -order[ga]):
            a, b, ga, gb = b, a, gb, ga
        listed = alike.setdefault(ga, {})
        path = paths_by_sha[b][0]
        listed[path] = min(listed.get(path, link.distance), link.distance)

    groups = []
    for info in infos:
        sha = info.sha256
        if sha in group_of:
            continue
        files = paths_by_sha[sha]
        same = [(p, 0) for p in files[1:]] + dups.get(sha, [])
        looks = sorted(alike.get(sha, {}).items(), key=lambda item: (item[1], str(item[0])))
        if same or looks:
            groups.append(FileGroup(files[0], tuple(same), tuple(looks), by_sha[sha]))
    return groups, problems
