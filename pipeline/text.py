"""Text normalisation and hashing, in two strengths.

`normalise_text` cleans what is stored and shown (NFC, no control characters, single spaces; case,
punctuation and line breaks kept). `normalise` and the keys and shingle hashes built on it are for
matching (dedupe, decontamination): they forget case, spacing and punctuation but keep the math.

Digits, decimal points and operators survive normalisation (two problems that differ only in "3+4" vs
"3+5" must not look identical); thousands separators and trailing decimal zeros do not ("22,600" and
"22600" are the same number). CJK text has no spaces, so each ideograph is its own token.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Sequence

import numpy as np

# Operators and math symbols that change a problem's meaning; every other punctuation mark is noise.
MATH_SYMBOLS = "+-*/=<>^%×÷±≤≥≠≈√π∠°∞∑∫|!"
_SYMBOLS = re.escape(MATH_SYMBOLS)
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
# Number spellings, rewritten before tokenising. Each pattern starts with a literal so that `re`
# can skip ahead to it: a pattern that starts with a lookbehind is tried at every position (5x slower).
_NUMBER_SPELLINGS = [
    (re.compile(r",(?<=\d,)(?=\d{3}(?!\d))"), ""),  # 22,600 -> 22600
    (re.compile(r"\.(?<!\d\.)(?=\d)"), "0."),  # .5 -> 0.5
    (re.compile(r"0(?<![\d.]0)0*(?=\d)"), ""),  # 007 -> 7
    (re.compile(r"\.(?<=\d\.)(\d*?)0+(?!\d)"), r".\1"),  # 2.500 -> 2.5, 3.0 -> 3. (the bare point goes next)
    (re.compile(r"!(?<![\d)]!)"), " "),  # "5!" is a factorial, "Wow!" is punctuation
]
# Tokens: numbers with their decimal point, words, single ideographs, single math symbols. ASCII text
# (most of it) takes the ASCII pattern, which is 1.6x faster and gives the same tokens.
_ASCII_TOKEN = re.compile(rf"[0-9]+(?:\.[0-9]+)?|[a-z]+|[{_SYMBOLS}]")
_TOKEN = re.compile(rf"\d+(?:\.\d+)?|[{_CJK}]|[^\W\d_{_CJK}]+|[{_SYMBOLS}]")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # category C in ASCII, less tab and line break


def normalise_text(text: str) -> str:
    """NFC, no control characters, collapsed runs of spaces; line breaks kept (tables use them)."""
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    if text.isascii():  # most text: one regex over the only control characters ASCII has (10x faster)
        text = _ASCII_CONTROL.sub("", text)
    else:
        text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    return "\n".join(" ".join(line.split()) for line in text.split("\n")).strip()


def normalise(text: str) -> str:
    """Case-, spacing- and punctuation-insensitive form: canonical numbers, words and math symbols
    separated by single spaces ("What's 3+4.50?" -> "what s 3 + 4.5")."""
    text = unicodedata.normalize("NFKC", text).casefold()
    for pattern, replacement in _NUMBER_SPELLINGS:
        text = pattern.sub(replacement, text)
    return " ".join((_ASCII_TOKEN if text.isascii() else _TOKEN).findall(text))


def problem_text(question: str, choices: Sequence[str] | None) -> str:
    """What near-dedupe and decontamination compare: the question, then the choices in given order."""
    return "\n".join([question, *(choices or [])])


def numbers_of(normalised: str) -> list[str]:
    return sorted(_NUMBER.findall(normalised))


def key64(value: str) -> int:
    """A stable signed 64-bit key of a string (Arrow and numpy store it as int64)."""
    return int.from_bytes(hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest(), "little", signed=True)


def answer_key(answer: str | None, choices: Sequence[str] | None) -> int:
    """Equal only when the normalised gold answer and the normalised choice set are equal."""
    return key64("\x1f".join([normalise(answer or ""), *sorted(normalise(c) for c in choices or [])]))


def numbers_key(normalised: str) -> int:
    """The multiset of numbers in a normalised text: a near-copy keeps its numbers, a variant changes them."""
    return key64(" ".join(numbers_of(normalised)))


# --- shingles -------------------------------------------------------------------------------------


def fmix64(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser: a bijection that spreads every input bit over the output."""
    with np.errstate(over="ignore"):
        values = values ^ (values >> np.uint64(33))
        values = values * np.uint64(0xFF51AFD7ED558CCD)
        values = values ^ (values >> np.uint64(33))
        values = values * np.uint64(0xC4CEB9FE1A85EC53)
        return values ^ (values >> np.uint64(33))


def _window_hashes(symbols: np.ndarray, lengths: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """32-bit hashes of every window of n consecutive symbols inside each sequence of a flat batch.

    `symbols` holds the sequences back to back, each followed by n zeros (real symbols are nonzero),
    `lengths` their sizes. Returns (hashes, offsets): the windows of sequence i are
    hashes[offsets[i]:offsets[i + 1]]. A sequence shorter than n is one window (itself, zero-padded);
    an empty one is the all-zero window, so a signature never sees an empty set.
    """
    windows = max(len(symbols) - n + 1, 0)  # an empty batch has no separators either
    value = np.full(windows, np.uint64(n), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):  # polynomial hash of every window at once, over contiguous slices
            value = value * np.uint64(0x100000001B3) + symbols[k : k + windows]
    starts = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1] + n, out=starts[1:])
    counts = np.maximum(lengths - n + 1, 1)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    owner = np.repeat(np.arange(len(lengths)), counts)
    positions = starts[owner] + (np.arange(offsets[-1]) - offsets[owner])
    return (fmix64(value[positions]) >> np.uint64(32)).astype(np.uint32), offsets


def char_shingle_hashes(texts: Sequence[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Character n-grams of each normalised text of a batch; see `_window_hashes`."""
    lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
    joined = ("\0" * n).join(texts) + "\0" * n  # normalised text never holds NUL
    codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    return _window_hashes(codes, lengths, n)


def word_shingle_hashes(token_lists: Sequence[Sequence[str]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Word n-grams of each token list of a batch; see `_window_hashes`."""
    vocabulary: dict[str, int] = {}
    ids = [[vocabulary.setdefault(t, len(vocabulary) + 1) for t in toks] + [0] * n for toks in token_lists]
    token_hash = np.zeros(len(vocabulary) + 1, dtype=np.uint64)  # id 0 is the separator
    token_hash[1:] = np.array([key64(t) for t in vocabulary], dtype=np.int64).view(np.uint64) | np.uint64(1)
    lengths = np.fromiter((len(t) - n for t in ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter((i for toks in ids for i in toks), dtype=np.int64, count=int(lengths.sum()) + n * len(ids))
    return _window_hashes(token_hash[flat], lengths, n)
