"""Ingest on the real shared data, and on a corrupted copy of it."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.ingest.images import ImageLimits, normalise_image
from pipeline.ingest.sources import SourceConfig
from pipeline.ingest.stage import IngestConfig, IngestStage
from pipeline.io import StageDir, read_quarantine
from pipeline.errors import RowError
from pipeline.stage import run_shard
from schemas import PROBLEM_SCHEMA, validate_problem


def ingest(run_dir: Path, data_root: Path, *sources: SourceConfig, shard_size: int = 500) -> list[str]:
    stage = IngestStage(IngestConfig(shard_size=shard_size), list(sources), data_root)
    shards = stage.shards()
    for shard in shards:
        run_shard(stage, run_dir, shard)
    return shards


def problems(run_dir: Path) -> list[dict]:
    return [row for _, table in StageDir(run_dir, "problems").iter_tables() for row in table.to_pylist()]


TABMWP = SourceConfig(name="tabmwp", format="tabmwp", path="tabmwp/problems.json", domain="table_math")


def test_tabmwp_sample_gives_1000_problems_with_decoded_images(tmp_path, data_root):
    ingest(tmp_path, data_root, TABMWP)
    rows = problems(tmp_path)
    assert len(rows) == 1000
    assert read_quarantine(tmp_path, "problems").num_rows == 0
    for row in rows:
        assert validate_problem(row) == []
        (image,) = row["images"]
        decoded = Image.open(io.BytesIO(image["bytes"]))
        assert decoded.mode == "RGB" and decoded.size == (image["width"], image["height"])
    multi_choice = [r for r in rows if r["question_type"] == "multi_choice"]
    assert len(multi_choice) == 249 and all(len(r["choices"]) >= 2 for r in multi_choice)
    assert len({r["problem_id"] for r in rows}) == 1000


def test_corrupted_copy_quarantines_exactly_the_bad_rows(tmp_path, data_root):
    copy = tmp_path / "data" / "tabmwp"
    shutil.copytree(data_root / "tabmwp", copy)
    records = json.loads((copy / "problems.json").read_text())
    ids = list(records)
    bad_json, missing_image, truncated_png = ids[3], ids[10], ids[20]
    records[bad_json] = "{'question': not json"  # a row that is not a problem object
    (copy / "problems.json").write_text(json.dumps(records))
    (copy / "tables" / f"{missing_image}.png").unlink()
    png = copy / "tables" / f"{truncated_png}.png"
    png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])

    ingest(tmp_path / "run", tmp_path / "data", TABMWP)
    quarantine = {row["source_id"]: row for row in read_quarantine(tmp_path / "run", "problems").to_pylist()}
    assert {k: v["reason"] for k, v in quarantine.items()} == {
        bad_json: "invalid_record",
        missing_image: "image_missing",
        truncated_png: "image_undecodable",
    }
    assert all(row["detail"] for row in quarantine.values())
    kept = {row["source_id"] for row in problems(tmp_path / "run")}
    assert len(kept) == 997 and not kept & set(quarantine)


def test_gsm8k_lines_and_a_broken_line(tmp_path, data_root):
    lines = (data_root / "gsm8k" / "test.jsonl").read_text().splitlines()[:50]
    lines[7] = lines[7][:40]  # cut mid-object
    lines[9] = json.dumps({"question": "no final answer line", "answer": "it is 4"})
    (tmp_path / "gsm8k.jsonl").write_text("\n".join(lines) + "\n")
    source = SourceConfig(name="gsm8k", format="gsm8k", path=str(tmp_path / "gsm8k.jsonl"), domain="arithmetic_word")
    ingest(tmp_path / "run", tmp_path, source, shard_size=20)
    reasons = {r["source_id"]: r["reason"] for r in read_quarantine(tmp_path / "run", "problems").to_pylist()}
    assert reasons == {"7": "invalid_json", "9": "missing_field"}
    rows = problems(tmp_path / "run")
    assert len(rows) == 48
    first = next(r for r in rows if r["source_id"] == "0")
    assert first["answer"] == "18" and first["answer_type"] == "integer" and "<<" not in first["solution"]


def test_image_paths_cannot_escape_the_source_root(tmp_path, data_root):
    (tmp_path / "outside.png").write_bytes((data_root / "tabmwp" / "tables" / "16.png").read_bytes())
    rows = [{"question": "q", "answer": "1", "image": path} for path in ("../outside.png", str(tmp_path / "outside.png"))]
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    source = SourceConfig(
        name="generic", format="jsonl", path=str(tmp_path / "root" / "data.jsonl"), domain="d",
        columns={"question": "question", "answer": "answer", "images": "image"},
    )
    ingest(tmp_path / "run", tmp_path, source)
    assert [r["reason"] for r in read_quarantine(tmp_path / "run", "problems").to_pylist()] == ["unsafe_image_path"] * 2


@pytest.mark.parametrize("mode", ["CMYK", "P", "LA", "I;16", "1"])
def test_unusual_image_modes_become_rgb(mode):
    image = Image.new("RGB", (40, 30), (200, 10, 10)).convert(mode) if mode != "I;16" else Image.new("I;16", (40, 30), 4000)
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF" if mode in ("CMYK", "I;16") else "PNG")
    result = normalise_image(buffer.getvalue(), path="x", limits=ImageLimits())
    assert Image.open(io.BytesIO(result.bytes)).mode == "RGB" and (result.width, result.height) == (40, 30)


def test_large_images_are_bounded_and_bombs_refused():
    buffer = io.BytesIO()
    Image.new("RGB", (3000, 1000), "white").save(buffer, format="PNG")
    bounded = normalise_image(buffer.getvalue(), path="x", limits=ImageLimits(max_side=1024))
    assert (bounded.width, bounded.height) == (1024, 341)
    with pytest.raises(RowError) as error:
        normalise_image(buffer.getvalue(), path="x", limits=ImageLimits(max_pixels=1_000_000))
    assert error.value.reason == "image_too_many_pixels"


def test_large_jpeg_decoded_at_reduced_scale_keeps_size_and_picture():
    """A JPEG shrunk by half or more is decoded at the decoder's reduced scale: same target size,
    the same picture as a full decode and resize (within JPEG noise), corrupt streams still refused."""
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)  # 100 px blocks of colour: a coarse "diagram"
    buffer = io.BytesIO()
    Image.fromarray(blocks).resize((4000, 3000), Image.Resampling.NEAREST).save(buffer, format="JPEG", quality=90)
    limits = ImageLimits()
    bounded = normalise_image(buffer.getvalue(), path="x", limits=limits)
    assert (bounded.width, bounded.height) == (1182, 887)  # area within 1024 x 1024, aspect kept
    full = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB").resize((1182, 887), Image.Resampling.LANCZOS)
    fast = Image.open(io.BytesIO(bounded.bytes)).convert("RGB")
    assert np.abs(np.asarray(full, dtype=int) - np.asarray(fast, dtype=int)).mean() < 4
    with pytest.raises(RowError) as error:
        normalise_image(buffer.getvalue()[: len(buffer.getvalue()) // 2], path="x", limits=limits)
    assert error.value.reason == "image_undecodable"


def test_problem_schema_is_what_ingest_writes(tmp_path, data_root):
    ingest(tmp_path, data_root, TABMWP)
    assert StageDir(tmp_path, "problems").read("tabmwp-00000").schema.equals(PROBLEM_SCHEMA, check_metadata=False)


def test_generic_adapter_reads_a_parquet_folder_with_an_image_column(tmp_path, data_root):
    import datasets

    records = json.loads((data_root / "tabmwp" / "problems.json").read_text())
    ids = list(records)[:5]
    table = datasets.Dataset.from_dict(
        {
            "uid": ids,
            "prompt": [records[i]["question"] for i in ids],
            "target": [records[i]["answer"] for i in ids],
            "picture": [
                {"bytes": (data_root / "tabmwp" / "tables" / f"{i}.png").read_bytes(), "path": f"{i}.png"} for i in ids
            ],
        },
        features=datasets.Features(
            uid=datasets.Value("string"), prompt=datasets.Value("string"), target=datasets.Value("string"), picture=datasets.Image()
        ),
    )
    (tmp_path / "src").mkdir()
    table.to_parquet(str(tmp_path / "src" / "part-0.parquet"))
    source = SourceConfig(
        name="mine", format="hf", path=str(tmp_path / "src"), domain="table_math",
        columns={"source_id": "uid", "question": "prompt", "answer": "target", "images": "picture"},
    )
    ingest(tmp_path / "run", tmp_path, source)
    rows = problems(tmp_path / "run")
    assert [r["source_id"] for r in rows] == ids
    assert all(len(r["images"]) == 1 and r["images"][0]["width"] > 0 for r in rows)
    tabmwp = {r["source_id"]: r for r in problems_of(tmp_path / "tabmwp_run", data_root)}
    assert all(r["images"][0]["sha256"] == tabmwp[r["source_id"]]["images"][0]["sha256"] for r in rows)


def problems_of(run_dir: Path, data_root: Path) -> list[dict]:
    ingest(run_dir, data_root, TABMWP)
    return problems(run_dir)


MATHVISION = SourceConfig(name="mathvision", format="mathvision", path="mathvision/test.jsonl", domain="visual_math")


def mathvision_slice(tmp_path: Path, data_root: Path, rows: int) -> tuple[Path, list[dict]]:
    """The first `rows` MATH-V problems with their images, copied as published."""
    copy = tmp_path / "data" / "mathvision"
    (copy / "images").mkdir(parents=True)
    records = [json.loads(line) for line in (data_root / "mathvision" / "test.jsonl").read_text().splitlines()[:rows]]
    for record in records:
        shutil.copy(data_root / "mathvision" / record["image"], copy / record["image"])
    (copy / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return copy, records


def test_corrupted_mathvision_slice_quarantines_exactly_the_bad_rows(tmp_path, data_root):
    copy, records = mathvision_slice(tmp_path, data_root, 40)
    lines = [json.dumps(r) for r in records]
    lines[7] = '{"id": "8", "question": "broken'  # a bad JSON line
    (copy / records[10]["image"]).unlink()  # a missing image
    truncated = copy / records[20]["image"]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])  # a truncated JPEG
    lines[30] = json.dumps(records[30] | {"image": ""})  # "<image1>" in the question, no image
    (copy / "test.jsonl").write_text("\n".join(lines) + "\n")
    ingest(tmp_path / "run", tmp_path / "data", MATHVISION)
    quarantined = {r["source_id"]: r["reason"] for r in read_quarantine(tmp_path / "run", "problems").to_pylist()}
    assert quarantined == {
        "7": "invalid_json",  # the line number: a line that does not parse has no readable id
        records[10]["id"]: "image_missing",
        records[20]["id"]: "image_undecodable",
        records[30]["id"]: "image_placeholder_without_image",
    }
    rows = problems(tmp_path / "run")
    assert len(rows) == 36 and all(len(r["images"]) == 1 and r["problem_type"] for r in rows)


def test_mathvision_rows_keep_option_texts_letters_level_and_subject(tmp_path, data_root):
    _, records = mathvision_slice(tmp_path, data_root, 60)
    ingest(tmp_path / "run", tmp_path / "data", MATHVISION)
    rows = {r["source_id"]: r for r in problems(tmp_path / "run")}
    assert len(rows) == 60 and read_quarantine(tmp_path / "run", "problems").num_rows == 0
    for record in records:
        row, metadata = rows[record["id"]], json.loads(rows[record["id"]]["metadata"])
        assert (metadata["level"], metadata["subject"]) == (record["level"], record["subject"])
        if record["options"]:  # the gold is the text of the lettered option; the letter stays in metadata
            assert row["question_type"] == "multi_choice" and metadata["answer_letter"] == record["answer"]
            assert row["answer"] == record["options"]["ABCDE".index(record["answer"])]
        else:
            assert row["question_type"] == "free_form" and row["answer"] == record["answer"]
    drawn = rows["2"]  # "Which bike is most expensive?": options A-E drawn in the image
    assert drawn["choices"] == ["A", "B", "C", "D", "E"] and json.loads(drawn["metadata"])["options_in_image"]
    assert rows["1"]["problem_type"] == "arithmetic" and rows["3"]["problem_type"] == "plane_geometry"
    # MATH-V's one composite image carries every placeholder: "<image1>\n<image2>" is not quarantined.
    assert "<image2>" in rows["21"]["question"] and len(rows["21"]["images"]) == 1


def test_mathvision_fields_repairs_json_escapes_and_types_answers():
    from pipeline.ingest.sources import mathvision_fields

    row = {"id": "x", "question": "Find it. <image1>", "options": [], "answer": "\x0crac{36}{13}", "image": "images/x.jpg", "level": 3, "subject": "analytic geometry"}
    fields = mathvision_fields(row, "x")
    assert fields.answer == "\\frac{36}{13}" and fields.answer_type == "expression" and fields.problem_type == "functions"
    with pytest.raises(RowError) as error:
        mathvision_fields(row | {"options": ["1", "2"], "answer": "C"}, "x")
    assert error.value.reason == "invalid_field"
    with pytest.raises(RowError) as error:
        mathvision_fields(row | {"image": ["images/a.jpg", "images/b.jpg"], "question": "<image1> <image2> <image3>"}, "x")
    assert error.value.reason == "image_placeholder_without_image"


def gsm8k_array(path: Path, data_root: Path, rows: int) -> list[dict]:
    """A JSON array of generic rows (the layout of released SFT sets) from real GSM8K problems, varied per row."""
    lines = (data_root / "gsm8k" / "test.jsonl").read_text().splitlines()
    real = [json.loads(line) for line in lines]
    array = [
        {"id": f"row-{i}", "problem": f"{real[i % len(real)]['question']} (variant {i})", "solution": real[i % len(real)]["answer"].rsplit("####", 1)[1].strip()}
        for i in range(rows)
    ]
    path.write_text(json.dumps(array))
    return array


ARRAY_SOURCE = dict(name="sft", format="json", domain="arithmetic_word", columns={"question": "problem", "answer": "solution", "source_id": "id"})


def test_a_json_array_of_rows_streams_in_bounded_memory(tmp_path, data_root, monkeypatch):
    import tracemalloc

    from pipeline.ingest.sources import make_adapter

    monkeypatch.setenv("MMR_CACHE", str(tmp_path / "cache"))
    rows = gsm8k_array(tmp_path / "sft.json", data_root, 40_000)
    size = (tmp_path / "sft.json").stat().st_size
    adapter = make_adapter(SourceConfig(**ARRAY_SOURCE, path=str(tmp_path / "sft.json")), data_root)
    tracemalloc.start()
    count = adapter.count()  # streams the whole document once
    shard = list(adapter.records(30_000, 30_050))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert count == 40_000 and peak < size / 10, (peak, size)  # the rows never sit in memory together
    assert [r.value for r in shard] == rows[30_000:30_050] and shard[0].source_id == "row-30000"
    # Another process (a worker, a rerun) reuses the streamed copy instead of parsing the document again.
    (spill,) = (tmp_path / "cache" / "json-lines").glob("*.jsonl")
    written = spill.stat().st_mtime_ns
    again = make_adapter(SourceConfig(**ARRAY_SOURCE, path=str(tmp_path / "sft.json")), data_root)
    assert again.count() == 40_000 and spill.stat().st_mtime_ns == written


def test_a_json_array_ingests_like_json_lines(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("MMR_CACHE", str(tmp_path / "cache"))
    gsm8k_array(tmp_path / "sft.json", data_root, 120)
    with open(tmp_path / "sft.jsonl", "w") as lines:
        lines.writelines(json.dumps(row) + "\n" for row in json.loads((tmp_path / "sft.json").read_text()))
    ingest(tmp_path / "array", tmp_path, SourceConfig(**ARRAY_SOURCE, path="sft.json"), shard_size=50)
    ingest(tmp_path / "lines", tmp_path, SourceConfig(**{**ARRAY_SOURCE, "format": "jsonl"}, path="sft.jsonl"), shard_size=50)
    assert problems(tmp_path / "array") == problems(tmp_path / "lines") and len(problems(tmp_path / "array")) == 120


@pytest.mark.parametrize(
    ("text", "format", "message"),
    [
        ('[{"problem": "1+1?", "solution": "2"}, {"problem": ', "json", "is not valid JSON"),
        ('"just a string"', "json", "must hold a JSON object keyed by problem id or a JSON array of rows"),
        ('[{"question": "1+1?"}]', "tabmwp", "must hold a JSON object keyed by problem id"),
    ],
)
def test_a_broken_json_document_is_a_clear_error(tmp_path, monkeypatch, text, format, message):
    from pipeline.ingest.sources import make_adapter

    monkeypatch.setenv("MMR_CACHE", str(tmp_path / "cache"))
    (tmp_path / "doc.json").write_text(text)
    adapter = make_adapter(SourceConfig(**{**ARRAY_SOURCE, "format": format}, path=str(tmp_path / "doc.json")), tmp_path)
    with pytest.raises(ValueError, match=message) as error:
        adapter.count()
    assert "doc.json" in str(error.value)
    assert not list((tmp_path / "cache" / "json-lines").glob("*"))  # no half-written copy left behind
