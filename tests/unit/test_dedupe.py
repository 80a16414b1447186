from __future__ import annotations

import csv
import io
import random
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image

import tasks.dedupe as dedupe
from tasks.dedupe import clusters_from_pairs, hamming, near_duplicate_pairs, perceptual_hash

ANIMEFACE = Path(__file__).resolve().parents[3] / "shared" / "data" / "animeface-10"
METHODS = ("blocked", "mih", "auto")


# --- references and data --------------------------------------------------------------------------


def reference_distances(hashes: list[int], max_threshold: int) -> dict[tuple[int, int], int]:
    """Brute force in pure Python: every pair i < j within max_threshold, with its distance."""
    found = {}
    for i, a in enumerate(hashes):
        for j in range(i + 1, len(hashes)):
            d = (a ^ hashes[j]).bit_count()
            if d <= max_threshold:
                found[(i, j)] = d
    return found


def flip(value: int, bits: int, rng: random.Random, width: int = 64) -> int:
    for bit in rng.sample(range(width), bits):
        value ^= 1 << bit
    return value


def planted(n: int = 2000, seed: int = 0) -> tuple[list[int], dict[int, tuple[int, int]]]:
    """Random 64-bit hashes with planted copies at every distance 0..12, and a clump of 300 hashes that
    share their low 40 bits (large MIH buckets, the dense path). Returns hashes and, per distance d,
    one planted pair (base, copy) at exactly d bits."""
    rng = random.Random(seed)
    hashes = [rng.getrandbits(64) for _ in range(n)]
    low = rng.getrandbits(40)
    for k in range(300):
        hashes[k] = (rng.getrandbits(24) << 40) | low
    exact = {}
    slots = rng.sample(range(300, n), 600)  # disjoint (base, copy) slots: no plant overwrites another
    for k in range(300):
        base, copy = slots[2 * k], slots[2 * k + 1]
        d = k % 13  # distances cycle through 0..12
        hashes[copy] = flip(hashes[base], d, rng)
        exact[d] = (min(base, copy), max(base, copy))
    return hashes, exact


@pytest.fixture(scope="module")
def planted_data():
    hashes, exact = planted()
    return hashes, exact, reference_distances(hashes, 12)


def as_set(pairs: np.ndarray) -> set[tuple[int, int]]:
    return {(int(i), int(j)) for i, j in pairs}


# --- near_duplicate_pairs ----------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0, 1, 2, 3, 4, 6, 8, 10])
@pytest.mark.parametrize("method", METHODS)
def test_methods_match_the_python_reference(planted_data, method: str, threshold: int):
    hashes, exact, reference = planted_data
    pairs = near_duplicate_pairs(np.array(hashes, dtype=np.uint64), threshold, method)
    expected = sorted(p for p, d in reference.items() if d <= threshold)
    assert pairs.dtype == np.int64 and pairs.shape == (len(expected), 2)
    assert [tuple(p) for p in pairs.tolist()] == expected  # same set, sorted lexicographically, i < j
    at = exact[threshold]
    assert hamming(hashes[at[0]], hashes[at[1]]) == threshold and at in as_set(pairs)  # exactly at: in
    at_next = exact[threshold + 1]
    assert hamming(hashes[at_next[0]], hashes[at_next[1]]) == threshold + 1
    assert at_next not in as_set(pairs)  # one bit more is out


def test_the_test_data_exercises_both_mih_paths(planted_data):
    """The clump must produce buckets above the small-bucket limit, or the dense path goes untested."""
    hashes, _, _ = planted_data
    h = np.array(hashes, dtype=np.uint64)
    for threshold in (4, 10):
        sizes = np.concatenate([dedupe._bucket_sizes(h, s, w) for s, w in dedupe._chunks(threshold)])
        assert sizes.max() > dedupe._SMALL_BUCKET and ((sizes >= 2) & (sizes <= dedupe._SMALL_BUCKET)).any()


@pytest.mark.parametrize("method", ["blocked", "mih"])
def test_tile_and_batch_boundaries(planted_data, monkeypatch: pytest.MonkeyPatch, method: str):
    """Tiny tiles and batches: every boundary (row blocks, column tiles, candidate batches) is crossed."""
    monkeypatch.setattr(dedupe, "_TILE_ROWS", 48)
    monkeypatch.setattr(dedupe, "_TILE_COLS", 200)
    monkeypatch.setattr(dedupe, "_PAIR_BATCH", 1000)
    hashes, _, reference = planted_data
    pairs = near_duplicate_pairs(np.array(hashes, dtype=np.uint64), 6, method)
    assert as_set(pairs) == {p for p, d in reference.items() if d <= 6}


@pytest.mark.parametrize("method", METHODS)
def test_empty_and_single(method: str):
    for hashes in (np.array([], dtype=np.uint64), np.array([7], dtype=np.uint64), []):
        pairs = near_duplicate_pairs(hashes, 4, method)
        assert pairs.shape == (0, 2) and pairs.dtype == np.int64


@pytest.mark.parametrize("method", METHODS)
def test_identical_hashes_are_distance_zero(method: str):
    h = np.array([5, 2**64 - 1, 5, 5, 2**64 - 1], dtype=np.uint64)
    assert near_duplicate_pairs(h, 0, method).tolist() == [[0, 2], [0, 3], [1, 4], [2, 3]]
    all_same = np.full(200, 0xDEADBEEF, dtype=np.uint64)  # one bucket holding everything
    assert len(near_duplicate_pairs(all_same, 0, method)) == 200 * 199 // 2


def test_threshold_at_or_above_the_width_gives_every_pair():
    h = np.array([0, 2**64 - 1, 12345], dtype=np.uint64)
    assert near_duplicate_pairs(h, 63).tolist() == [[0, 2], [1, 2]]
    for method in METHODS:
        assert near_duplicate_pairs(h, 64, method).tolist() == [[0, 1], [0, 2], [1, 2]]


def test_python_ints_above_2_63_keep_every_bit():
    hashes = [1, 2**63 + 1, 3, 2**63]  # np.asarray would make this float64 and lose the low bits
    assert near_duplicate_pairs(hashes, 1).tolist() == [[0, 1], [0, 2], [1, 3]]


def test_wide_hashes_match_the_reference():
    """hash_size 16 gives 256-bit ints: split into words and scanned by the blocked method."""
    rng = random.Random(3)
    hashes = [rng.getrandbits(256) for _ in range(150)]
    for k in range(40):
        hashes[150 - 1 - k] = flip(hashes[k], k % 20, rng, width=256)
    reference = reference_distances(hashes, 12)
    for threshold in (0, 5, 12):
        pairs = near_duplicate_pairs(hashes, threshold)
        assert as_set(pairs) == {p for p, d in reference.items() if d <= threshold}
    with pytest.raises(ValueError, match="64-bit"):
        near_duplicate_pairs(hashes, 3, "mih")


@pytest.mark.parametrize(
    ("hashes", "threshold", "method"),
    [
        ([1, 2], 2, "nope"),
        ([1, 2], -1, "auto"),
        ([1, 2], 1.5, "auto"),
        ([-1, 2], 1, "auto"),
        (np.array([-1, 2]), 1, "auto"),
        ([1.0, 2.0], 1, "auto"),
        (np.zeros((2, 2), dtype=np.uint64), 1, "auto"),
    ],
)
def test_rejects_bad_input(hashes, threshold, method: str):
    with pytest.raises(ValueError):
        near_duplicate_pairs(hashes, threshold, method)


def test_auto_prefers_mih_at_small_thresholds_and_blocked_at_large(monkeypatch: pytest.MonkeyPatch):
    calls = []
    monkeypatch.setattr(dedupe, "_mih", lambda h, t: calls.append("mih") or np.empty(0, dtype=np.int64))
    monkeypatch.setattr(dedupe, "_blocked", lambda w, t: calls.append("blocked") or np.empty(0, dtype=np.int64))
    h = np.random.default_rng(0).integers(0, 2**64, size=20_000, dtype=np.uint64)
    near_duplicate_pairs(h, 4)
    near_duplicate_pairs(h, 20)
    near_duplicate_pairs(np.zeros(20_000, dtype=np.uint64), 4)  # one huge bucket per chunk: MIH is worse
    assert calls == ["mih", "blocked", "blocked"]


# --- hamming and clusters ----------------------------------------------------------------------------


def test_hamming():
    assert hamming(0, 0) == 0
    assert hamming(0b1011, 0b0001) == 2
    assert hamming(2**64 - 1, 0) == 64
    assert hamming(1 << 200, 0) == 1
    with pytest.raises(ValueError):
        hamming(-1, 0)


def test_clusters_chain_into_one_with_the_smallest_id():
    # a-b and b-c: one cluster {a, b, c} although a and c are not a pair; singletons keep their index
    assert clusters_from_pairs(6, [(2, 4), (4, 5)]).tolist() == [0, 1, 2, 3, 2, 2]
    assert clusters_from_pairs(6, [(5, 4), (4, 2)]).tolist() == [0, 1, 2, 3, 2, 2]  # order does not matter
    assert clusters_from_pairs(3, np.empty((0, 2), dtype=np.int64)).tolist() == [0, 1, 2]
    assert clusters_from_pairs(0, []).tolist() == []
    assert clusters_from_pairs(3, [(1, 1)]).tolist() == [0, 1, 2]
    with pytest.raises(ValueError):
        clusters_from_pairs(3, [(0, 3)])


def test_clusters_match_a_python_union_find():
    rng = random.Random(7)
    n = 3000
    pairs = [(rng.randrange(2000), rng.randrange(2000)) for _ in range(1500)]
    pairs += [(k + 1, k) for k in range(2000, 2400)]  # a long chain, visited in a shuffled order
    rng.shuffle(pairs)

    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)
    expected = [find(x) for x in range(n)]

    ids = clusters_from_pairs(n, pairs)
    assert ids.dtype == np.int64 and ids.tolist() == expected
    assert set(ids[2000:2401].tolist()) == {2000} and ids[2401:].tolist() == list(range(2401, n))
    assert 1 < len(set(ids[:2000].tolist())) < 2000


# --- perceptual_hash ---------------------------------------------------------------------------------


def picture(seed: int, size: int = 256) -> Image.Image:
    """A smooth synthetic picture: coloured blobs over a wave (structure at several scales)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    pixels = np.zeros((size, size, 3))
    for _ in range(6):
        cx, cy, sigma = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
        pixels += np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))[..., None] * rng.uniform(0, 255, 3)
    pixels += (np.sin(x * rng.uniform(2, 8) + rng.uniform(0, 6)) * 40)[..., None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def resized_jpeg(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.resize((150, 150), Image.Resampling.BICUBIC).save(buffer, "JPEG", quality=60)
    buffer.seek(0)
    return Image.open(buffer)


@pytest.mark.parametrize("kind", ["dhash", "phash"])
@pytest.mark.parametrize("seed", [0, 1, 3, 5])
def test_resized_recompressed_copy_is_near_and_other_pictures_far(kind: str, seed: int):
    original = picture(seed)
    h = perceptual_hash(original, kind)
    assert 0 <= h < 2**64
    assert hamming(h, perceptual_hash(resized_jpeg(original), kind)) <= 4
    assert hamming(h, perceptual_hash(picture(seed + 1000), kind)) >= 12


@pytest.mark.parametrize("kind", ["phash", "dhash", "ahash"])
def test_hash_is_imagehash_value_as_int(kind: str):
    image = picture(2)
    function = {"phash": imagehash.phash, "dhash": imagehash.dhash, "ahash": imagehash.average_hash}[kind]
    assert perceptual_hash(image, kind) == int(str(function(image)), 16)
    wide = perceptual_hash(image, kind, hash_size=16)
    assert wide == int(str(function(image, hash_size=16)), 16) and wide < 2**256


def test_hidden_colour_under_transparency_does_not_change_the_hash():
    rgba = np.zeros((128, 128, 4), dtype=np.uint8)
    rgba[32:96, 32:96] = (200, 40, 40, 255)  # an opaque square
    hidden_black, hidden_noise = rgba.copy(), rgba.copy()
    transparent = rgba[..., 3] == 0
    hidden_noise[transparent, :3] = np.random.default_rng(0).integers(0, 256, (int(transparent.sum()), 3))
    a = perceptual_hash(Image.fromarray(hidden_black, "RGBA"))
    b = perceptual_hash(Image.fromarray(hidden_noise, "RGBA"))
    assert a == b
    on_white = Image.new("RGB", (128, 128), "white")
    on_white.paste((200, 40, 40), (32, 32, 96, 96))
    assert a == perceptual_hash(on_white)


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "LAB", "1", "I", "LA", "PA"])
def test_other_modes_hash(mode: str):
    assert 0 <= perceptual_hash(picture(4).convert(mode)) < 2**64


def test_unknown_kind_and_bad_size_raise():
    with pytest.raises(ValueError, match="unknown hash kind"):
        perceptual_hash(picture(0), "whash")
    with pytest.raises(ValueError):
        perceptual_hash(picture(0), "dhash", hash_size=1)


# --- real data ---------------------------------------------------------------------------------------


def test_animeface_near_duplicates_match_the_measured_facts():
    """../shared/data/README.md: 57 near-duplicate pairs (64-bit dhash within 4 bits), each within one
    class, touching 105 images. Hashes are taken from the PNG files as they are (RGB)."""
    if not (ANIMEFACE / "labels.csv").is_file():
        pytest.skip(f"../shared/data/animeface-10 not present: no {ANIMEFACE / 'labels.csv'}")
    with open(ANIMEFACE / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    hashes = []
    for row in rows:
        with Image.open(ANIMEFACE / row["path"]) as image:
            hashes.append(perceptual_hash(image, "dhash", hash_size=8))
    h = np.array(hashes, dtype=np.uint64)

    pairs = near_duplicate_pairs(h, 4)
    assert len(pairs) == 57
    assert len(np.unique(pairs)) == 105
    assert [(i, j) for i, j in pairs.tolist() if rows[i]["label"] != rows[j]["label"]] == []
    for method in ("blocked", "mih"):
        assert np.array_equal(near_duplicate_pairs(h, 4, method), pairs)
    clusters = clusters_from_pairs(len(h), pairs)
    assert all(clusters[i] == clusters[j] == min(clusters[i], i) for i, j in pairs.tolist())
    alone = np.setdiff1d(np.arange(len(h)), pairs)
    assert np.array_equal(clusters[alone], alone)
