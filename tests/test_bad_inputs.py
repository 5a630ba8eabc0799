"""A corpus of 10,000+ malformed rows: no crash, every bad row quarantined with a reason, every good
row around them kept, memory bounded. Run alone with `-s` to see the counts."""

from __future__ import annotations

import io
import json
import random
import resource
from collections import Counter
from pathlib import Path

from PIL import Image

from pipeline.ingest.sources import SourceConfig
from pipeline.ingest.stage import IngestConfig, IngestStage
from pipeline.io import StageDir, read_quarantine
from pipeline.stage import run_shard

BAD_ROWS = 10_000
GOOD_EVERY = 10  # a good row after every 10 bad ones


def png(image: Image.Image, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def write_images(folder: Path) -> dict[str, list[str]]:
    """Image files by expected outcome: 'good' ones must be kept, the rest quarantined."""
    folder.mkdir(parents=True)
    base = png(Image.new("RGB", (64, 48), (10, 120, 200)))
    files = {
        "good/rgb.png": base,
        "good/cmyk.jpg": png(Image.new("CMYK", (64, 48), (0, 50, 100, 0)), "JPEG"),
        "good/gray16.png": png(Image.new("I;16", (64, 48), 3000)),
        "good/palette.png": png(Image.new("RGB", (64, 48), "red").convert("P")),
        "good/alpha.png": png(Image.new("RGBA", (64, 48), (0, 0, 0, 0))),
        "bad/truncated.png": base[: len(base) // 2],
        "bad/garbage.png": bytes(random.Random(0).randbytes(4096)),
        "bad/empty.png": b"",
        "bad/bomb.png": png(Image.new("1", (12_000, 12_000))),  # 144 Mpx in a small file
        "bad/text.png": b"not an image at all",
    }
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return {
        "good": [n for n in files if n.startswith("good/")],
        "bad": [n for n in files if n.startswith("bad/")] + ["../outside.png", "/etc/passwd", "missing/none.png"],
    }


def bad_row(rng: random.Random, images: dict[str, list[str]]) -> bytes:
    """One malformed JSON line (or not JSON at all), chosen from the kinds untrusted data brings."""
    good = {"question": "What is 2 + 3?", "answer": "5"}
    kind = rng.randrange(12)
    if kind == 0:
        noise = bytes(rng.choice([b for b in range(256) if b not in b"\r\n"]) for _ in range(rng.randrange(1, 30)))
        return b'{"question": "broken' + noise
    if kind == 1:
        return b'{"question": "\xff\xfe invalid utf-8 \xc3\x28", "answer": "1"}'
    if kind == 2:
        dropped = rng.choice(list(good))
        return json.dumps({k: v for k, v in good.items() if k != dropped}).encode()
    if kind == 3:
        return json.dumps(good | {"question": rng.choice([None, 17.5, True, [], {"a": 1}, ""])}).encode()
    if kind == 4:
        return json.dumps(good | {"answer": rng.choice([None, [], {"x": 1}, "", "   ", False])}).encode()
    if kind == 5:
        return json.dumps(good | {"question": "x" * rng.randrange(30_000, 300_000)}).encode()
    if kind == 6:
        return json.dumps(good | {"image": rng.choice(images["bad"])}).encode()
    if kind == 7:
        return json.dumps(good | {"choices": rng.choice(["abc", [None, {}], 5]), "answer": "a"}).encode()
    if kind == 8:
        return json.dumps(rng.choice([[1, 2], "just a string", 42, None])).encode()
    if kind == 9:
        return json.dumps(good | {"image": [rng.choice(images["good"])] * 20}).encode()  # too many images
    if kind == 10:
        return json.dumps(good | {"precision": rng.choice(["two", 1.5, -3, 99])}).encode()
    return json.dumps(good | {"answer": "9" * rng.randrange(3000, 50_000)}).encode()


def test_ten_thousand_bad_rows_are_quarantined_and_good_rows_kept(tmp_path, capsys):
    rng = random.Random(7)
    images = write_images(tmp_path / "src" / "images")
    (tmp_path / "src" / "outside.png").write_bytes((tmp_path / "src" / "images" / "good" / "rgb.png").read_bytes())
    lines, good_ids = [], []
    for index in range(BAD_ROWS):
        lines.append(bad_row(rng, images))
        if index % GOOD_EVERY == 0:
            good_ids.append(str(len(lines)))
            image = images["good"][len(good_ids) % len(images["good"])]
            lines.append(json.dumps({"question": f"Good question {len(good_ids)}?", "answer": "5", "image": image}).encode())
    (tmp_path / "src" / "rows.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    source = SourceConfig(
        name="fuzz", format="jsonl", path=str(tmp_path / "src" / "rows.jsonl"), domain="d",
        image_root=str(tmp_path / "src" / "images"),
        columns={"question": "question", "answer": "answer", "images": "image", "choices": "choices", "precision": "precision"},
    )
    stage = IngestStage(IngestConfig(shard_size=2000), [source], tmp_path)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for shard in stage.shards():
        run_shard(stage, tmp_path / "run", shard)
    rss_growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024

    kept = [row for _, t in StageDir(tmp_path / "run", "problems").iter_tables() for row in t.to_pylist()]
    quarantined = read_quarantine(tmp_path / "run", "problems").to_pylist()
    reasons = Counter(row["reason"] for row in quarantined)
    with capsys.disabled():
        print(f"\nbad-input corpus: {len(lines)} rows, {len(kept)} kept, {len(quarantined)} quarantined, "
              f"peak RSS growth {rss_growth_mb:.0f} MB\n  reasons: {dict(reasons.most_common())}")
    unexpected = [(r["source_id"], lines[int(r["source_id"])][:200]) for r in kept if r["source_id"] not in good_ids]
    assert not unexpected
    assert len(quarantined) == BAD_ROWS and all(row["reason"] and row["raw"] for row in quarantined)
    assert {"invalid_json", "missing_field", "invalid_field", "image_undecodable", "unsafe_image_path",
            "image_missing", "question_too_long", "answer_too_long", "too_many_images"} <= set(reasons)
    assert reasons["image_too_many_pixels"] + reasons["image_decompression_bomb"] > 0
    assert rss_growth_mb < 1500
