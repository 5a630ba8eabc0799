"""The data cards' figures against counts recomputed here from the published Parquet alone: rows by source,
domain, problem type and teacher, images, the pass-rate histogram, and chain-of-thought token lengths from an
independent WordPiece tokenisation (BERT's published algorithm over the packaged MiniLM vocabulary, no padding).

Uses the session's default run (tests/conftest.py `curated_sets`): no curate run of its own."""

from __future__ import annotations

import math
import re
import statistics
import unicodedata
from collections import Counter
from fractions import Fraction

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from pipeline.score.diversity import DiversityStageConfig, model_folder


def card_table(card: str, header: str) -> dict[str, list[str]]:
    """The rows of the card's markdown table whose header row starts with `| header |`: first cell -> the rest."""
    lines = card.split(f"\n| {header} |", 1)[1].split("\n")[2:]  # past the header and the |---| line
    rows = {}
    for line in lines:
        if not line.startswith("|"):
            break
        first, *rest = [cell.strip() for cell in line.strip("|").split("|")]
        rows[first] = rest
    return rows


def card_counts(card: str, header: str) -> dict[str, int]:
    return {name: int(cells[0]) for name, cells in card_table(card, header).items()}


# --- an independent WordPiece (BERT's BasicTokenizer + greedy longest-match-first), uncased like MiniLM ---------

CJK = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
       (0x2B820, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))


def is_punctuation(char: str) -> bool:
    code = ord(char)
    return 33 <= code <= 47 or 58 <= code <= 64 or 91 <= code <= 96 or 123 <= code <= 126 or unicodedata.category(char).startswith("P")


def basic_tokens(text: str) -> list[str]:
    kept = []
    for char in text:
        if char in "\t\n\r" or unicodedata.category(char) == "Zs":
            kept.append(" ")
        elif ord(char) not in (0, 0xFFFD) and not unicodedata.category(char).startswith("C"):
            kept.append(f" {char} " if any(lo <= ord(char) <= hi for lo, hi in CJK) else char)
    tokens = []
    for word in "".join(kept).split():
        word = "".join(c for c in unicodedata.normalize("NFD", word.lower()) if unicodedata.category(c) != "Mn")
        piece = ""
        for char in word:
            if is_punctuation(char):
                tokens += [piece, char] if piece else [char]
                piece = ""
            else:
                piece += char
        tokens += [piece] if piece else []
    return tokens


def wordpiece_count(text: str, vocab: set[str]) -> int:
    count = 0
    for token in basic_tokens(text):
        if len(token) > 100:
            count += 1  # [UNK]
            continue
        pieces, start = 0, 0
        while start < len(token):
            end = len(token)
            while end > start and (token[start:end] if start == 0 else "##" + token[start:end]) not in vocab:
                end -= 1
            if end == start:
                pieces = 1  # a word with no tokenisation is one [UNK]
                break
            pieces, start = pieces + 1, end
        count += pieces
    return count


@pytest.fixture(scope="module")
def vocab() -> set[str]:
    return set((model_folder(DiversityStageConfig()) / "vocab.txt").read_text(encoding="utf-8").splitlines())


def published(folder, columns):
    return pq.read_table(folder / "data", columns=columns)


def statistic(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def p90(values: list[int]) -> float:
    """Linear interpolation between closest ranks (numpy's default), computed by hand."""
    ordered, position = sorted(values), 0.9 * (len(values) - 1)
    low = math.floor(position)
    return ordered[low] + (ordered[min(low + 1, len(ordered) - 1)] - ordered[low]) * (position - low)


@pytest.mark.parametrize("which", ["cold_start", "rl"])
def test_card_counts_match_the_published_parquet(curated_sets, which):
    folder = curated_sets[which]
    card = (folder / "README.md").read_text()
    columns = ["source", "domain", "problem_type", "pass_rate"] + (["teacher"] if which == "cold_start" else [])
    table = published(folder, columns)
    rows = table.num_rows
    assert rows > 0 and re.search(rf"\b{rows} (supervised examples|prompts) in ", card)
    for column, header in (("source", "source"), ("domain", "domain"), ("problem_type", "problem type"), ("teacher", "teacher")):
        if column in columns:
            assert card_counts(card, header) == Counter("unassigned" if v is None else v for v in table.column(column).to_pylist())

    images = pc.list_value_length(published(folder, ["images"]).column("images")).to_pylist()
    assert card_counts(card, "images per row") == {str(k): v for k, v in Counter(images).items()}
    assert f"{100 * sum(1 for n in images if n) / rows:.1f}% of rows carry an image" in card

    # Pass rates are k/n for n rollouts: exact fractions, binned into tenths with 1.0 in the last bin.
    bins = Counter()
    for rate in table.column("pass_rate").to_pylist():
        bins["no pass rate" if rate is None else min(math.floor(10 * Fraction(rate).limit_denominator(1000)), 9)] += 1
    expected = {f"[{i / 10:.1f}, {(i + 1) / 10:.1f}" + ("]" if i == 9 else ")"): bins[i] for i in range(10)}
    assert card_counts(card, "pass rate") == expected | {"no pass rate": bins["no pass rate"]}
    if which == "rl":  # strictly between 0 and 1, so the first and last bins hold only what 1/k and (k-1)/k allow
        assert bins["no pass rate"] == 0 and sum(bins.values()) == rows


def test_cot_token_lengths_are_whole_replies_by_an_independent_tokenisation(curated_sets, vocab):
    folder = curated_sets["cold_start"]
    card = (folder / "README.md").read_text()
    table = published(folder, ["teacher", "messages"])
    every = max(1, math.ceil(table.num_rows / 20_000))  # the card's sample: rows 0, k, 2k, ... of the set
    if every == 1:
        assert "on every row" in card
    lengths: dict[str, list[int]] = {}
    for index in range(0, table.num_rows, every):
        reply = table.column("messages")[index].as_py()[-1]["content"]
        lengths.setdefault(table.column("teacher")[index].as_py(), []).append(wordpiece_count(reply, vocab))
    teachers = card_table(card, "teacher")
    assert set(teachers) == set(lengths)
    for teacher, values in lengths.items():
        _, median, ninetieth, measured = teachers[teacher]
        assert (median, ninetieth, int(measured)) == (statistic(statistics.median(values)), statistic(p90(values)), len(values)), teacher
    # The bug this guards against: MiniLM's tokenizer.json pads every text to 128, so every short reply counted 126.
    assert max(max(values) for values in lengths.values()) > 128
