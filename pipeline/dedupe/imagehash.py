"""Perceptual image hashes (pHash) and their near-duplicate groups.

pHash: grey-scale, resize to (size * 4)^2, 2-D DCT, keep the size x size lowest frequencies, one bit per
coefficient (above the median or not). A 16 x 16 = 256-bit hash tells apart TabMWP tables that differ
in a few cells far better than the classic 64-bit one, which puts hundreds of distinct tables of the
shared data within 6 bits of each other; a resized and recompressed copy stays within ~12 bits.
"""

from __future__ import annotations

import io
from functools import lru_cache

import numpy as np
from PIL import Image

from pipeline.dedupe.minhash import bucket_pairs, unique_pairs
from pipeline.dedupe.unionfind import UnionFind

_OVERSAMPLE = 4  # DCT input side per hash side: enough resolution for the low frequencies we keep


@lru_cache(maxsize=4)
def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    return np.cos(np.pi * (2 * x + 1) * k / (2 * n))


def phash(image: Image.Image, size: int = 16) -> np.ndarray:
    """size^2-bit perceptual hash as uint64 words (size^2 must be a multiple of 64)."""
    side = size * _OVERSAMPLE
    # Only the lowest frequencies vote, so an integer box reduction may precede the filter: 4.5 -> ~2 ms
    # an image of the bench corpus. (A JPEG's reduced-scale decode would be faster still, but then a PNG
    # copy of the same picture hashes too far from it for decontamination to find.)
    grey = np.asarray(image.convert("L").resize((side, side), Image.Resampling.LANCZOS, reducing_gap=2.0), dtype=np.float64)
    dct = _dct_matrix(side)
    low = (dct @ grey @ dct.T)[:size, :size].ravel()
    bits = low > np.median(low[1:])  # the DC term (overall brightness) does not vote on the median
    return np.packbits(bits).view(">u8").astype(np.uint64)


def phash_bytes(data: bytes, size: int = 16) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return phash(image, size)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bit distance between rows of two (n, words) uint64 hash arrays."""
    return np.bitwise_count(a ^ b).sum(axis=-1)


def image_groups(
    hashes: np.ndarray,
    aspects: np.ndarray,
    *,
    bands: int,
    max_distance: int,
    max_aspect_change: float,
    max_all_pairs: int,
) -> tuple[np.ndarray, int]:
    """Root index of each image's near-duplicate group, and the number of verified pairs.

    Bands split the hash into equal bit slices; two hashes within `bands - 1` bits agree exactly on at
    least one slice (pigeonhole), so bucketing by slice finds every pair the distance test accepts.
    Verified pairs must also keep their aspect ratio (a resize does; a table with more rows does not).
    """
    count, words = hashes.shape
    if (words * 64) % (bands * 8) or bands <= max_distance:
        raise ValueError(f"{bands} bands must split {words * 64} bits into whole bytes and exceed {max_distance}")
    slices = hashes.astype(">u8").view(np.uint8).reshape(count, bands, words * 8 // bands)
    order = hashes[:, 0].view(np.int64)  # inside a crowded bucket, neighbours in hash order are compared

    def band_pairs(band: int) -> tuple[np.ndarray, np.ndarray]:
        keys = np.zeros(count, dtype=np.uint64)
        for byte in range(slices.shape[2]):
            keys = (keys << np.uint64(8)) | slices[:, band, byte]
        return bucket_pairs(keys, order, max_all_pairs)

    left, right = unique_pairs(band_pairs(band) for band in range(bands))
    close = hamming(hashes[left], hashes[right]) <= max_distance
    close &= np.abs(np.log(aspects[left] / aspects[right])) <= np.log1p(max_aspect_change)
    groups = UnionFind(count)
    groups.union_pairs(left[close], right[close])
    return groups.roots(), int(close.sum())
