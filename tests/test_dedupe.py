"""Dedupe: the pure pieces alone, then the whole stage on the real shared problems plus planted rows."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from datasketch import MinHash
from PIL import Image
from problem_rows import (
    DATA_ROOT,
    copy_problems,
    problem_row,
    read_stage,
    real_problems,
    write_shard,
)

from pipeline.dedupe import DedupeConfig, DedupeIndex, DedupeStage
from pipeline.dedupe.imagehash import hamming, image_groups, phash_bytes
from pipeline.dedupe.minhash import band_keys, bucket_pairs, salted, signatures, sorted_distinct, unique_pairs
from pipeline.dedupe.unionfind import UnionFind
from pipeline.ingest.images import ImageLimits, normalise_image
from pipeline.io import StageDir, file_sha256
from pipeline.stage import run_shard
from pipeline.text import char_shingle_hashes, normalise

LINEAR_QUESTION = "The table shows a function. Is the function linear or nonlinear?"


def table_png(source_id: str) -> bytes:
    return (DATA_ROOT / "tabmwp" / "tables" / f"{source_id}.png").read_bytes()


def resized_recompressed(png: bytes) -> bytes:
    """What a crawler makes of an image: 3/4 size, JPEG quality 85, then our own ingest (to PNG)."""
    with Image.open(io.BytesIO(png)) as original:
        smaller = original.convert("RGB").resize((original.width * 3 // 4, original.height * 3 // 4))
    buffer = io.BytesIO()
    smaller.save(buffer, format="JPEG", quality=85)
    return normalise_image(buffer.getvalue(), path="", limits=ImageLimits()).bytes


# --- pure functions -------------------------------------------------------------------------------


def test_union_find_joins_transitively_and_roots_at_the_smallest_index():
    groups = UnionFind(6)
    groups.union_pairs(np.array([4, 1, 5]), np.array([2, 4, 3]))
    assert groups.roots().tolist() == [0, 1, 1, 3, 1, 3]
    assert groups.find(2) == 1


def test_normalisation_forgets_case_spacing_punctuation_but_keeps_digits_and_operators():
    assert normalise("What is 3+4?") == normalise("  what IS 3 + 4 ") == "what is 3 + 4"
    assert normalise("What is 3+5?") != normalise("What is 3+4?")
    assert normalise("x^2-1 = 0, so x = .5") == "x ^ 2 - 1 = 0 so x = 0.5"
    assert normalise("It costs $22,600.50 (7.0 kg)") == "it costs 22600.5 7 kg"


def test_character_shingles_carry_the_numbers():
    hashes, offsets = char_shingle_hashes([normalise("What is 3+4?"), normalise("What is 3+5?"), "ab"], 5)
    first, second = set(hashes[offsets[0] : offsets[1]]), set(hashes[offsets[1] : offsets[2]])
    assert first != second and first & second  # the shared words match, the changed digit does not
    assert offsets[3] - offsets[2] == 1  # a text shorter than n is one shingle


def test_batch_signatures_equal_datasketch_minhash_row_by_row():
    texts = [normalise(t) for t in ["What is 3+4?", "Janet's ducks lay 16 eggs per day.", ""]]
    hashes, offsets = char_shingle_hashes(texts, 5)
    batch = signatures(hashes, offsets, 128, 7)
    for row in range(len(texts)):
        reference = MinHash(num_perm=128, seed=7, hashfunc=int)
        reference.update_batch(hashes[offsets[row] : offsets[row + 1]].tolist())
        assert np.array_equal(reference.hashvalues, batch[row])


def test_bucket_pairs_are_all_pairs_in_small_buckets_and_star_plus_chain_in_large_ones():
    keys = np.array([5, 5, 5, 1, 2, 2, 5, 5], dtype=np.uint64)
    left, right = bucket_pairs(keys, np.arange(8), max_all_pairs=8)
    assert set(zip(left.tolist(), right.tolist())) == {
        (4, 5),
        (0, 1),
        (0, 2),
        (0, 6),
        (0, 7),
        (1, 2),
        (1, 6),
        (1, 7),
        (2, 6),
        (2, 7),
        (6, 7),
    }
    left, right = bucket_pairs(keys, np.arange(8), max_all_pairs=3)
    assert set(zip(left.tolist(), right.tolist())) == {(4, 5), (0, 1), (0, 2), (0, 6), (0, 7), (1, 2), (2, 6), (6, 7)}


def test_keys_salted_after_banding_and_pairs_merged_band_by_band_equal_the_all_at_once_forms():
    """The clustering keeps only unsalted band keys and merges each band's pairs as it goes; both must
    be exactly what salting inside `band_keys` and one `np.unique` over every band give."""
    rng = np.random.default_rng(3)
    signature = rng.integers(0, 2**32, (500, 128), dtype=np.uint64).astype(np.uint32)
    salt = rng.integers(-(2**63), 2**63 - 1, 500, dtype=np.int64)
    assert np.array_equal(salted(band_keys(signature, 32), salt), band_keys(signature, 32, salt))
    bands = [(rng.integers(0, 50, 300), rng.integers(50, 100, 300)) for _ in range(6)]
    packed = np.unique(np.concatenate([(a.astype(np.uint64) << np.uint64(32)) | b.astype(np.uint64) for a, b in bands]))
    left, right = unique_pairs(bands)
    assert np.array_equal(left, (packed >> np.uint64(32)).astype(np.int64))
    assert np.array_equal(right, (packed & np.uint64(0xFFFFFFFF)).astype(np.int64))
    for values in (np.empty(0, dtype=np.int64), np.array([7]), rng.integers(0, 9, 1000)):
        assert np.array_equal(sorted_distinct(values), np.unique(values))


def test_phash_groups_a_resized_recompressed_table_with_its_original_but_not_with_another_table(real_run):
    problems = read_stage(
        real_run, "problems", [s for s in StageDir(real_run, "problems").done_shards() if "tabmwp" in s]
    )
    linear = [p["source_id"] for p in problems if p["question"] == LINEAR_QUESTION]
    original, other = table_png(linear[0]), table_png(linear[1])  # the same kind of table: the hard case
    copy = resized_recompressed(original)
    hashes = np.stack([phash_bytes(original), phash_bytes(copy), phash_bytes(other)])
    assert hamming(hashes[0], hashes[1]) <= 12 < hamming(hashes[0], hashes[2])
    aspects = np.array(
        [image.width / image.height for image in (Image.open(io.BytesIO(b)) for b in (original, copy, other))]
    )
    roots, _ = image_groups(hashes, aspects, bands=16, max_distance=12, max_aspect_change=0.1, max_all_pairs=64)
    assert roots.tolist() == [0, 0, 2]


# --- the stage on real data -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    return real_problems(tmp_path_factory)


def planted_rows(real_run) -> list[dict]:
    shards = StageDir(real_run, "problems").done_shards()
    real = {(p["source"], p["source_id"]): p for p in read_stage(real_run, "problems", shards)}
    janet, table = real[("gsm8k", "0")], real[("tabmwp", "16")]
    linear = sorted(p["source_id"] for p in real.values() if p["question"] == LINEAR_QUESTION)
    speed = "A train travels 60 km in 1.5 hours. What is its average speed in km per hour?"
    janet_copy = janet["question"].replace("She eats", "She then eats").upper().replace(" ", "  ") + " !!"
    resized = normalise_image(resized_recompressed(table_png("16")), path="", limits=ImageLimits()).as_row()
    return [
        problem_row(janet_copy, janet["answer"], source_id="janet-copy"),
        problem_row(janet_copy, "19", source_id="janet-other-answer"),
        problem_row("What is 3+4?", "7", source_id="sum-7"),
        problem_row("What is 3+5?", "8", source_id="sum-8"),
        problem_row("what is 3 + 4", "7", source_id="sum-7-copy"),
        problem_row(speed, "40", source="b", source_id="2", solution="60 / 1.5 = 40"),
        problem_row(speed + " ", "40", source="a", source_id="9"),
        problem_row(
            speed.lower(), "40", source="c", source_id="1", solution="Speed is distance over time: 60 / 1.5 = 40 km/h."
        ),
        problem_row("How far is it from Ayton to Beeville?", "12", source="b", source_id="1"),
        problem_row("How far is it from Ayton to Beeville??", "12", source="a", source_id="2"),
        problem_row(table["question"], table["answer"], source_id="table-resized", images=[resized]),
        problem_row(
            table["question"],
            table["answer"],
            source_id="table-other",
            images=[real[("tabmwp", linear[0])]["images"][0]],
        ),
        problem_row(
            "What is the median of the numbers?",
            table["answer"],
            source_id="table-other-question",
            images=table["images"],
        ),
    ]


@pytest.fixture(scope="module")
def deduped(real_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("dedupe")
    shards = copy_problems(real_run, run) + [write_shard(run, "planted-00000", planted_rows(real_run))]
    index = DedupeIndex(DedupeConfig()).prepare(run, shards)
    stage = DedupeStage(DedupeConfig(), index)
    for shard in shards:
        run_shard(stage, run, shard)
    problems = read_stage(run, "problems", shards)
    annotations = read_stage(run, "dedupe", shards)
    rows = {(p["source"], p["source_id"]): {**p, **a} for p, a in zip(problems, annotations)}
    return run, shards, index, rows


def kept_row(rows: dict, key: tuple[str, str]) -> tuple[str, str]:
    row = rows[key]
    rep = next(r for r in rows.values() if r["problem_id"] == row["near_cluster"] and r["is_representative"])
    return rep["source"], rep["source_id"]


def test_one_row_per_problem_row_in_order_with_one_representative_per_cluster(deduped):
    run, shards, _, rows = deduped
    for shard in shards:
        ids = StageDir(run, "problems").read(shard, ["problem_id"]).column("problem_id")
        assert StageDir(run, "dedupe").read(shard, ["problem_id"]).column("problem_id").equals(ids)
    representatives = [r["near_cluster"] for r in rows.values() if r["is_representative"]]
    assert len(representatives) == len(set(representatives)) == len({r["near_cluster"] for r in rows.values()})


def test_planted_near_copy_of_a_real_problem_is_found(deduped):
    rows = deduped[3]
    copy = rows[("planted", "janet-copy")]
    assert copy["duplicate_of"] == rows[("gsm8k", "0")]["problem_id"] and copy["duplicate_kind"] == "near"
    assert kept_row(rows, ("planted", "janet-copy")) == ("gsm8k", "0")  # the row with the reference solution


def test_problems_whose_answers_differ_are_never_merged(deduped):
    rows = deduped[3]
    assert rows[("planted", "janet-other-answer")]["is_representative"]
    assert rows[("planted", "sum-7")]["near_cluster"] != rows[("planted", "sum-8")]["near_cluster"]
    assert rows[("planted", "sum-7-copy")]["duplicate_kind"] == "exact"
    for cluster in {r["near_cluster"] for r in rows.values()}:
        members = [r for r in rows.values() if r["near_cluster"] == cluster]
        assert len({normalise(r["answer"]) for r in members}) == 1


def test_representative_is_the_longest_solution_then_the_smallest_source_and_id(deduped):
    rows = deduped[3]
    assert {kept_row(rows, k) for k in [("b", "2"), ("a", "9"), ("c", "1")]} == {("c", "1")}
    assert {kept_row(rows, k) for k in [("b", "1"), ("a", "2")]} == {("a", "2")}
    assert rows[("c", "1")]["cluster_size"] == 3


def test_images_decide_between_same_text_problems(deduped):
    rows = deduped[3]
    assert kept_row(rows, ("planted", "table-resized")) == ("tabmwp", "16")  # same table, resized + recompressed
    assert rows[("planted", "table-other")]["is_representative"]  # same question and answer, another table
    assert rows[("planted", "table-other-question")]["is_representative"]  # same table, another question
    linear = [r for r in rows.values() if r["source"] == "tabmwp" and r["question"] == LINEAR_QUESTION]
    assert len(linear) == 30 and all(r["is_representative"] for r in linear)  # 30 real tables, 2 answers


def test_the_index_is_reused_and_the_output_is_byte_identical_across_runs(deduped, tmp_path):
    run, shards, index, _ = deduped
    manifest = (index / "manifest.json").read_bytes()
    assert DedupeIndex(DedupeConfig(workers=2)).prepare(run, shards) == index  # workers are not part of the key
    assert (index / "manifest.json").read_bytes() == manifest
    other = tmp_path / "again"
    copy_problems(run, other)
    again = DedupeIndex(DedupeConfig(workers=2)).prepare(other, shards)
    assert json.loads((again / "manifest.json").read_text())["files"] == json.loads(manifest)["files"]
    stage = DedupeStage(DedupeConfig(), again)
    for shard in shards:
        run_shard(stage, other, shard)
        assert file_sha256(StageDir(other, "dedupe").shard_path(shard)) == file_sha256(
            StageDir(run, "dedupe").shard_path(shard)
        )


def test_an_empty_shard_gets_an_empty_annotation(tmp_path):
    rows = {"a-00000": [], "b-00000": [problem_row("What is 3+4?", "7")]}
    shards = [write_shard(tmp_path, shard, shard_rows) for shard, shard_rows in rows.items()]
    stage = DedupeStage(DedupeConfig(), DedupeIndex(DedupeConfig()).prepare(tmp_path, shards))
    assert [run_shard(stage, tmp_path, shard).rows for shard in shards] == [0, 1]
