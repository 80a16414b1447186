"""Near-duplicate detection with perceptual hashes. Pure: images or hashes in, pairs and cluster ids out.

Reposts, crops and re-encodes of one picture would leak between train and test splits and over-weight
one drawing, so the dataset keeps one image per cluster of perceptual hashes within a small Hamming
distance. The pair search is exact (no approximate index): a missed pair is a leaked duplicate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

HASH_KINDS = ("phash", "dhash", "ahash")

# Tile of the dense XOR + popcount kernel: 128 x 4096 uint64 is 4 MiB, which keeps the
# intermediate in cache; larger or narrower tiles measured 10-60% slower on the 2-core box.
_TILE_ROWS = 128
_TILE_COLS = 4096
# MIH buckets up to this size are expanded into explicit candidate pairs, all buckets of a chunk
# in one vectorised pass; larger buckets are compared as dense tiles (one numpy call per tile is
# cheaper than 20 ns per generated pair once a bucket holds more than a few dozen hashes).
_SMALL_BUCKET = 32
_PAIR_BATCH = 1 << 18  # candidate pairs generated per vectorised pass: bounds memory to a few MiB
# Figures behind method="auto" (see near_duplicate_pairs), measured on the 2-core dev box.
_NS_BLOCKED_PAIR = 0.9  # blocked: per pair of the upper triangle
_NS_DENSE_PAIR = 1.4  # mih, large buckets: per element of g(g + 128)/2 (triangle + diagonal tiles)
_NS_SMALL_PAIR = 25.0  # mih, small buckets: per generated candidate pair
_NS_BUCKET = 5_000.0  # mih, per large bucket (Python loop, a few numpy calls per tile)
_NS_CHUNK = 50_000.0  # mih, per chunk (fixed numpy overhead)
_NS_CHUNK_HASH = 60.0  # mih, per hash per chunk (argsort by chunk value, gathers)


def perceptual_hash(image: Image.Image, kind: str = "dhash", hash_size: int = 8) -> int:
    """The `imagehash` hash of `image` as an int of hash_size**2 bits (first hash bit = most significant).

    The int is the value of imagehash's hex string, so it matches `str(imagehash.dhash(image))` and tools
    that exchange hex hashes (imagededup). Transparent images are flattened onto white first: imagehash
    converts to L, which drops alpha and exposes whatever colour the encoder left under transparent
    pixels, so the same sticker saved by two programs would hash differently.
    """
    import imagehash  # imported here: importing this module does no work (imagehash pulls in scipy)

    functions = {"phash": imagehash.phash, "dhash": imagehash.dhash, "ahash": imagehash.average_hash}
    if kind not in functions:
        raise ValueError(f"unknown hash kind {kind!r}; expected one of {', '.join(HASH_KINDS)}")
    if hash_size < 2:
        raise ValueError(f"hash_size must be at least 2, got {hash_size}")
    bits = functions[kind](_for_hashing(image), hash_size=hash_size).hash.ravel()
    return int("".join("1" if bit else "0" for bit in bits), 2)


def _for_hashing(image: Image.Image) -> Image.Image:
    """`image` in L or RGB, transparency composited onto white. Why: see perceptual_hash."""
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode in ("L", "RGB"):
        return image
    return image.convert("RGB")  # P, CMYK, YCbCr, LAB (no direct L conversion in Pillow), 1, I, F...


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two non-negative hash ints (any width)."""
    if a < 0 or b < 0:
        raise ValueError("hashes must be non-negative ints")
    return (a ^ b).bit_count()


def near_duplicate_pairs(hashes: np.ndarray | Sequence[int], threshold: int, method: str = "auto") -> np.ndarray:
    """All pairs (i, j), i < j, with Hamming distance <= threshold: int64 array of shape (k, 2), sorted.

    `hashes` is a 1-D uint64 array (64-bit hashes, the fast paths) or a sequence of non-negative Python
    ints of any width (e.g. hash_size 16: 256 bits), which are split into 64-bit words and scanned by
    the blocked method. Both methods are exact; they differ only in speed.

    - "blocked": XOR + popcount of every pair of the upper triangle, in 128 x 4096 tiles (memory stays
      at a few MiB whatever n is). Cost does not depend on the data: ~0.75 ns per pair on the 2-core
      dev box at large n (100k hashes, 5e9 pairs: 3.5-3.8 s), ~1.7 ns per pair below 2k hashes.
    - "mih": multi-index hashing. The 64 bits are cut into threshold + 1 disjoint chunks; by the
      pigeonhole principle two hashes within `threshold` bits agree exactly on at least one chunk.
      For each chunk the hashes are sorted by chunk value; only pairs inside one bucket (equal chunk)
      are candidates, and each candidate is verified by popcount. Buckets of up to 32 hashes are
      expanded into candidate pairs in one vectorised pass (~25 ns per candidate); larger buckets are
      scanned as dense tiles (~1.4 ns per pair). A pair found through several chunks is reported once.
      Cost follows the candidates, so MIH shines at small thresholds (wide chunks, small buckets) and
      degrades at large thresholds (11 chunks of 5-6 bits at threshold 10) or on skewed hashes.
    - "auto": predicts both costs and runs the cheaper. MIH's prediction uses the exact bucket sizes
      of every chunk (a bincount per chunk, ~1 ms per chunk at 100k hashes): 60 ns per hash and 50 us
      per chunk (sorting), 25 ns per small-bucket candidate, 1.4 ns x g(g + 128)/2 + 5 us per bucket
      of g > 32 hashes. Blocked's is 0.9 ns x n(n - 1)/2. Measured on uniform random hashes, best of 3
      (ms, mih / blocked): n=100k t=4: 71 / 3433, t=10: 1488 / 3587; n=20k t=4: 10 / 144, t=10:
      108 / 175, t=12: 173 / 151, t=14: 296 / 170; n=5k t=4: 2.7 / 12.7, t=8: 21 / 13, t=10: 21 / 11;
      n=2k t=10: 8.3 / 3.0. So MIH wins at small thresholds and at large n, blocked at thresholds of
      about 12 and above (13+ chunks of 4-5 bits hold as many candidates as the full triangle) and
      at t >= 8 for a few thousand hashes. In that sweep auto stayed within ~15% of the faster method
      (plus ~0.3 ms of prediction below 1k hashes). Skewed hashes make buckets bigger and move the
      prediction towards blocked (all-identical hashes: blocked). The box is shared: figures vary by
      up to 2x between runs when other jobs are running, the ratios much less.
    """
    if method not in ("auto", "blocked", "mih"):
        raise ValueError(f"unknown method {method!r}; expected 'auto', 'blocked' or 'mih'")
    if isinstance(threshold, bool) or not isinstance(threshold, int | np.integer) or threshold < 0:
        raise ValueError(f"threshold must be a non-negative int, got {threshold!r}")
    threshold = int(threshold)
    words, bits = _as_words(hashes)
    n = words.shape[0]
    if n < 2:
        return np.empty((0, 2), dtype=np.int64)
    if threshold >= bits:  # every pair qualifies; no chunking is possible for MIH
        i, j = np.triu_indices(n, 1)
        return np.stack([i, j], axis=1).astype(np.int64)
    if words.shape[1] > 1:
        if method == "mih":
            raise ValueError("method 'mih' supports 64-bit hashes only; use 'blocked' or 'auto'")
        return _to_pairs(_blocked(words, threshold), n)
    if method == "auto":
        method = "mih" if _mih_cost_ns(words[:, 0], threshold) < _blocked_cost_ns(n) else "blocked"
    if method == "blocked":
        return _to_pairs(_blocked(words, threshold), n)
    return _to_pairs(_mih(words[:, 0], threshold), n)


def clusters_from_pairs(n: int, pairs: np.ndarray | Sequence[tuple[int, int]]) -> np.ndarray:
    """Cluster id of each of n items: connected components of the pair graph (int64, length n).

    Near-duplicates chain (a~b, b~c while a and c are further apart), and the dataset keeps one
    image per chain, so clusters are components, not cliques. The id is the smallest index in the
    component (singletons: their own index), so ids do not depend on the order of `pairs`.

    Union-find with union by smaller index, done for all pairs at once: each round hooks every root
    that has a pair into a tree with a smaller root onto the smallest such root, then compresses all
    paths; rounds repeat until no pair joins two trees. Roots only ever point to smaller indices, so
    there are no cycles and every root is the minimum of its tree.
    """
    if n < 0:
        raise ValueError(f"n must be non-negative, got {n}")
    edges = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if edges.size and (edges.min() < 0 or edges.max() >= n):
        raise ValueError(f"pair indices must be in [0, {n})")
    parent = np.arange(n, dtype=np.int64)
    a, b = edges[:, 0], edges[:, 1]
    while True:
        ra, rb = parent[a], parent[b]
        joins = ra != rb
        if not joins.any():
            return parent
        lo, hi = np.minimum(ra[joins], rb[joins]), np.maximum(ra[joins], rb[joins])
        np.minimum.at(parent, hi, lo)  # `hi` are roots: parent[hi] == hi before this round
        while True:  # path compression: afterwards every item points straight at its root
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand


# --- internals -----------------------------------------------------------------------------------


def _as_words(hashes: np.ndarray | Sequence[int]) -> tuple[np.ndarray, int]:
    """(n, w) uint64 words of the hashes, most significant word first, and the bit width (64 * w).

    Sequences go through Python ints: np.asarray([1, 2**63]) is float64 and would lose bits.
    """
    if isinstance(hashes, np.ndarray) and hashes.dtype.kind in "iu":
        if hashes.ndim != 1:
            raise ValueError(f"hashes must be one-dimensional, got shape {hashes.shape}")
        if hashes.dtype.kind == "i" and hashes.size and hashes.min() < 0:
            raise ValueError("hashes must be non-negative")
        return hashes.astype(np.uint64, copy=False).reshape(-1, 1), 64
    if isinstance(hashes, np.ndarray) and (hashes.ndim != 1 or hashes.dtype.kind != "O"):
        raise ValueError(f"hashes must be a 1-D integer array, got {hashes.dtype} of shape {hashes.shape}")
    values = list(hashes)
    if not all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values):
        raise ValueError("hashes must be ints")
    values = [int(v) for v in values]
    if values and min(values) < 0:
        raise ValueError("hashes must be non-negative")
    width = max((v.bit_length() for v in values), default=0)
    if width <= 64:
        return np.array(values, dtype=np.uint64).reshape(-1, 1), 64
    w = -(-width // 64)
    mask = (1 << 64) - 1
    words = np.array([[(v >> (64 * (w - 1 - k))) & mask for k in range(w)] for v in values], dtype=np.uint64)
    return words, 64 * w


def _to_pairs(keys: np.ndarray, n: int) -> np.ndarray:
    """Pairs from keys i * n + j, sorted and deduplicated.

    Sort + neighbour compare, not np.unique: numpy 2.4's np.unique hashes first and took 3.4 s of 4 s
    on 4.5M keys (3000 identical hashes).
    """
    keys = np.sort(keys)
    if len(keys) > 1:
        keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))]
    return np.stack([keys // n, keys % n], axis=1)


class _Tiles:
    """Scratch buffers of the dense XOR + popcount kernel, allocated once per search.

    Each tile is written to a contiguous view of flat buffers: `out=` into a strided sub-block, or a
    fresh temporary per tile, measured 2-3x slower. The R x R block on the diagonal is scanned on its
    own with its lower triangle masked, so that every other tile holds only pairs i < j and the
    usual tile (no hit) costs XOR + popcount + a min() reduction, no nonzero scan.
    """

    def __init__(self, words: int):
        self.count_dtype = np.uint8 if words < 4 else np.uint16  # at most 64 * words differing bits
        self.xor = np.empty(_TILE_ROWS * _TILE_COLS, dtype=np.uint64)
        self.count = np.empty(_TILE_ROWS * _TILE_COLS, dtype=self.count_dtype)
        self.part = np.empty(_TILE_ROWS * _TILE_COLS, dtype=self.count_dtype) if words > 1 else None
        # Added to the diagonal block to push pairs i >= j (the diagonal and below) past any threshold.
        self.lower = np.tri(_TILE_ROWS, dtype=self.count_dtype) * np.iinfo(self.count_dtype).max

    def triangle(self, words: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray]:
        """(row, col), row < col, of all pairs of `words` (n, w) within threshold, tile by tile."""
        n = words.shape[0]
        rows_found: list[np.ndarray] = []
        cols_found: list[np.ndarray] = []
        for i0 in range(0, n - 1, _TILE_ROWS):
            i1 = min(n, i0 + _TILE_ROWS)
            self._scan(words, i0, i1, i0, i1, threshold, rows_found, cols_found)
            for j0 in range(i1, n, _TILE_COLS):
                self._scan(words, i0, i1, j0, min(n, j0 + _TILE_COLS), threshold, rows_found, cols_found)
        if not rows_found:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        return np.concatenate(rows_found), np.concatenate(cols_found)

    def _scan(self, words, i0, i1, j0, j1, threshold, rows_found, cols_found) -> None:
        r, c = i1 - i0, j1 - j0
        x = self.xor[: r * c].reshape(r, c)
        count = self.count[: r * c].reshape(r, c)
        for k in range(words.shape[1]):
            np.bitwise_xor(words[i0:i1, k, None], words[None, j0:j1, k], out=x)
            if k == 0:
                np.bitwise_count(x, out=count)
            else:
                part = self.part[: r * c].reshape(r, c)
                np.bitwise_count(x, out=part)
                count += part
        if i0 == j0:  # the diagonal block: pairs i >= j are not wanted
            np.maximum(count, self.lower[:r, :c], out=count)
        if count.min() > threshold:
            return
        hits = np.flatnonzero(count <= threshold)
        rows_found.append(hits // c + i0)
        cols_found.append(hits % c + j0)


def _blocked_cost_ns(n: int) -> float:
    return _NS_BLOCKED_PAIR * n * (n - 1) / 2


def _blocked(words: np.ndarray, threshold: int) -> np.ndarray:
    """Keys i * n + j of all pairs i < j within threshold, by a full upper-triangle tile scan."""
    rows, cols = _Tiles(words.shape[1]).triangle(words, threshold)
    return rows * words.shape[0] + cols


def _chunks(threshold: int) -> list[tuple[int, int]]:
    """(shift, width) of threshold + 1 disjoint chunks covering the 64 bits, widths differing by <= 1."""
    m = threshold + 1
    base, extra = divmod(64, m)
    chunks, shift = [], 0
    for c in range(m):
        width = base + (1 if c < extra else 0)
        chunks.append((shift, width))
        shift += width
    return chunks


def _chunk_key(h: np.ndarray, shift: int, width: int) -> np.ndarray:
    key = h >> np.uint64(shift)
    return key & np.uint64((1 << width) - 1) if width < 64 else key


def _bucket_sizes(h: np.ndarray, shift: int, width: int) -> np.ndarray:
    """Sizes of the non-empty buckets of one chunk, without building its index (bincount when narrow)."""
    key = _chunk_key(h, shift, width)
    if width <= 20:
        counts = np.bincount(key.astype(np.intp), minlength=1)
        return counts[counts > 0]
    key = np.sort(key)
    return np.diff(np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1], [True]))))


def _mih_cost_ns(h: np.ndarray, threshold: int) -> float:
    """Predicted MIH time from the exact bucket sizes of every chunk (constants: see near_duplicate_pairs)."""
    total = 0.0
    for shift, width in _chunks(threshold):
        sizes = _bucket_sizes(h, shift, width).astype(np.float64)
        small, large = sizes[sizes <= _SMALL_BUCKET], sizes[sizes > _SMALL_BUCKET]
        total += _NS_CHUNK + _NS_CHUNK_HASH * len(h)
        total += _NS_SMALL_PAIR * float((small * (small - 1) / 2).sum())
        total += _NS_DENSE_PAIR * float((large * (large + _TILE_ROWS) / 2).sum()) + _NS_BUCKET * len(large)
    return total


def _mih(h: np.ndarray, threshold: int) -> np.ndarray:
    """Keys i * n + j (i < j) of pairs within threshold, found through shared chunks. May repeat a pair.

    Candidates are verified right away and only the (few) survivors are deduplicated, by the caller:
    deduplicating the candidates themselves would mean sorting every one of them.
    """
    n = len(h)
    tiles = _Tiles(1)
    found: list[np.ndarray] = []
    for shift, width in _chunks(threshold):  # one index at a time: memory stays O(n)
        key = _chunk_key(h, shift, width)
        order = np.argsort(key, kind="stable")
        sorted_key, hs = key[order], h[order]
        starts = np.flatnonzero(np.concatenate(([True], sorted_key[1:] != sorted_key[:-1])))
        sizes = np.diff(np.append(starts, n))
        small = (sizes >= 2) & (sizes <= _SMALL_BUCKET)
        found.extend(_small_buckets(hs, order, starts[small], sizes[small], threshold, n))
        large = sizes > _SMALL_BUCKET
        for start, size in zip(starts[large].tolist(), sizes[large].tolist(), strict=True):
            rows, cols = tiles.triangle(hs[start : start + size, None], threshold)
            a, b = order[rows + start], order[cols + start]
            found.append(np.minimum(a, b) * n + np.maximum(a, b))
    return np.concatenate(found) if found else np.empty(0, dtype=np.int64)


def _small_buckets(
    hs: np.ndarray, order: np.ndarray, starts: np.ndarray, sizes: np.ndarray, threshold: int, n: int
) -> list[np.ndarray]:
    """Verified pairs inside many small buckets, generated without a Python loop over buckets or pairs.

    Position p of a bucket [s, s + g) pairs with p + 1 .. s + g - 1: it has s + g - 1 - p partners.
    The positions are processed in batches of about _PAIR_BATCH candidates.
    """
    if len(starts) == 0:
        return []
    positions = np.repeat(starts, sizes) + _ramps(sizes)
    partners = np.repeat(starts + sizes, sizes) - positions - 1
    keep = partners > 0
    positions, partners = positions[keep], partners[keep]
    cumulative = np.cumsum(partners)
    found = []
    begin = 0
    while begin < len(positions):
        done = int(cumulative[begin - 1]) if begin else 0
        end = max(begin + 1, int(np.searchsorted(cumulative, done + _PAIR_BATCH, side="right")))
        counts = partners[begin:end]
        left = np.repeat(positions[begin:end], counts)
        right = left + 1 + _ramps(counts)
        hit = np.flatnonzero(np.bitwise_count(hs[left] ^ hs[right]) <= threshold)
        if len(hit):
            a, b = order[left[hit]], order[right[hit]]
            found.append(np.minimum(a, b) * n + np.maximum(a, b))
        begin = end
    return found


def _ramps(counts: np.ndarray) -> np.ndarray:
    """Concatenated 0..c-1 for each c in counts (vectorised)."""
    total = int(counts.sum())
    return np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
