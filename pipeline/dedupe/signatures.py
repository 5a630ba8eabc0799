"""Per shard: everything the global clustering needs from a problem row, a few hundred bytes per row.

Image bytes are decoded here once (for pHash) and never leave the shard.
"""

from __future__ import annotations

import pyarrow as pa

from pipeline.dedupe.config import DedupeConfig
from pipeline.dedupe.imagehash import phash_bytes
from pipeline.dedupe.minhash import text_signatures
from pipeline.text import answer_key, key64, normalise, numbers_key, problem_text

PROBLEM_COLUMNS = ["problem_id", "source", "source_id", "question", "choices", "answer", "solution", "images"]


def signature_schema(config: DedupeConfig) -> pa.Schema:
    return pa.schema(
        [
            ("problem_id", pa.string()),
            ("source", pa.string()),
            ("source_id", pa.string()),
            ("solution_chars", pa.int32()),
            ("exact_key", pa.int64()),  # normalised question + choices + image sha256s
            ("answer_key", pa.int64()),  # normalised answer + choice set
            ("numbers_key", pa.int64()),  # multiset of numbers in question + choices
            ("minhash", pa.list_(pa.uint32(), config.num_perm)),
            ("image_sha256", pa.list_(pa.string())),
            ("image_phash", pa.list_(pa.binary(config.phash_size**2 // 8))),
            ("image_aspect", pa.list_(pa.float32())),
        ]
    )


def shard_signatures(problems: pa.Table, config: DedupeConfig) -> pa.Table:
    rows = problems.select(["question", "choices", "answer", "solution"]).to_pydict()
    images = problems.column("images").to_pylist()
    texts = [normalise(problem_text(q, c)) for q, c in zip(rows["question"], rows["choices"])]
    shas = [[image["sha256"] for image in row or []] for row in images]
    minhash = text_signatures(texts, config.shingle_chars, config.num_perm, config.seed)
    columns = {
        "problem_id": problems.column("problem_id"),
        "source": problems.column("source"),
        "source_id": problems.column("source_id"),
        "solution_chars": [len(s or "") for s in rows["solution"]],
        "exact_key": [key64(t + "\x1e" + ",".join(s)) for t, s in zip(texts, shas)],
        "answer_key": [answer_key(a, c) for a, c in zip(rows["answer"], rows["choices"])],
        "numbers_key": [numbers_key(t) for t in texts],
        "minhash": pa.FixedSizeListArray.from_arrays(pa.array(minhash.ravel()), config.num_perm),
        "image_sha256": shas,
        "image_phash": [
            [phash_bytes(i["bytes"], config.phash_size).astype(">u8").tobytes() for i in row or []] for row in images
        ],
        "image_aspect": [[i["width"] / i["height"] for i in row or []] for row in images],
    }
    return pa.table(columns, schema=signature_schema(config))
