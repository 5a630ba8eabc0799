"""Trainer-ready exports beside the HF folders, for users who train elsewhere.

* Cold-start set -> LLaMA-Factory ShareGPT (the layout the paper's SFT set ships in): one JSON line per row with
  `conversations` ([{"from": "human", "value": "<image>..."}, {"from": "gpt", "value": ...}]), `system`, and
  `images` (paths relative to the export folder, one `<image>` tag per image, in order), the images as files,
  and a `dataset_info.json` entry naming the columns and tags.
* RL set -> verl / EasyR1 parquet: `prompt` (chat messages, `<image>` where each image goes), `images`,
  `data_source`, `reward_model.ground_truth`, `extra_info` (index + what the reward needs), plus `problem` /
  `answer`, the keys EasyR1 reads by default.

Both stream the published Parquet shard by shard (one file in, one file out), never the whole set, and are
built in a staging folder renamed into place: a crash leaves the previous export or none, never half of one.
`curate` writes them after publishing (`publish.trainer_exports`), beside the HF folders:
`<datasets>/cold_start-llamafactory/` and `<datasets>/rl-verl/`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.publish.dataset import published_empty_reason, published_rows

IMAGE_TAG = "<image>"
SHAREGPT_FILE = "cold_start.jsonl"
DATASET_INFO_FILE = "dataset_info.json"
SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt", "system_tag": "system"}


@contextmanager
def _replacing(out_dir: Path) -> Iterator[Path]:
    """A staging folder to fill; it replaces `out_dir` (and whatever an earlier export left there) at the end."""
    out_dir = Path(out_dir)
    staging = out_dir.parent / f".{out_dir.name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    yield staging
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)


def _shards(folder: Path) -> list[Path]:
    files = sorted(Path(folder).glob("data/*.parquet"))
    if not files:
        raise FileNotFoundError(f"{folder}: no data/*.parquet (not a published set)")
    return files


def _rows(folder: Path, columns: list[str] | None = None) -> Iterator[dict]:
    for path in _shards(folder):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=256, columns=columns):
            yield from batch.to_pylist()


def with_image_tags(text: str, images: int) -> str:
    """The text with one `<image>` tag per image in front, unless the text already places them."""
    present = text.count(IMAGE_TAG)
    if present not in (0, images):
        raise ValueError(f"{present} {IMAGE_TAG} tags for {images} images")
    return text if present == images else IMAGE_TAG * images + text


def sharegpt_row(row: Mapping, image_paths: list[str]) -> dict:
    messages = row["messages"]
    system = "\n".join(m["content"] for m in messages if m["role"] == "system")
    turns = [m for m in messages if m["role"] != "system"]
    roles = {"user": SHAREGPT_TAGS["user_tag"], "assistant": SHAREGPT_TAGS["assistant_tag"]}
    conversations = [{"from": roles[m["role"]], "value": m["content"]} for m in turns]
    conversations[0]["value"] = with_image_tags(conversations[0]["value"], len(image_paths))
    return {"conversations": conversations, "system": system, "images": image_paths, "id": row["problem_id"]}


def export_sharegpt(cold_start_dir: Path, out_dir: Path, dataset_name: str = "mmr_cold_start") -> Path:
    """The cold-start set in LLaMA-Factory's ShareGPT layout; returns the export folder."""
    with _replacing(out_dir) as staging:
        (staging / "images").mkdir()
        with open(staging / SHAREGPT_FILE, "w", encoding="utf-8") as lines:
            for row in _rows(cold_start_dir, ["problem_id", "messages", "images"]):
                paths = []
                for index, image in enumerate(row["images"] or []):
                    name = f"images/{row['problem_id']}-{index}{_suffix(image)}"
                    if not (staging / name).exists():  # a problem's image, shared by its teachers' samples
                        (staging / name).write_bytes(image["bytes"])
                    paths.append(name)
                lines.write(json.dumps(sharegpt_row(row, paths), ensure_ascii=False) + "\n")
        (staging / DATASET_INFO_FILE).write_text(json.dumps(_dataset_info(dataset_name), indent=2), encoding="utf-8")
    return Path(out_dir)


def _dataset_info(dataset_name: str) -> dict:
    """The `dataset_info.json` entry LLaMA-Factory reads to find the file and its columns."""
    return {
        dataset_name: {
            "file_name": SHAREGPT_FILE,
            "formatting": "sharegpt",
            "columns": {"messages": "conversations", "system": "system", "images": "images"},
            "tags": {k: v for k, v in SHAREGPT_TAGS.items() if k != "system_tag"},
        }
    }


def _suffix(image: Mapping) -> str:
    path = image.get("path") or ""
    return Path(path).suffix or ".png"


def check_sharegpt_export(out_dir: Path) -> list[str]:
    """Problems with an export against LLaMA-Factory's documented ShareGPT schema (data/README.md there): turns
    alternate human/gpt starting with human, one `<image>` tag per listed image, every image file present."""
    out_dir = Path(out_dir)
    info = json.loads((out_dir / DATASET_INFO_FILE).read_text(encoding="utf-8"))
    problems = []
    for name, entry in info.items():
        tags, columns = entry["tags"], entry["columns"]
        with open(out_dir / entry["file_name"], encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                row = json.loads(line)
                turns = row[columns["messages"]]
                roles = [turn[tags["role_tag"]] for turn in turns]
                expected = [tags["user_tag"], tags["assistant_tag"]] * (len(turns) // 2)
                if roles != expected or not turns:
                    problems.append(f"{name} line {number}: roles {roles}")
                images = row.get(columns["images"]) or []
                tagged = sum(turn[tags["content_tag"]].count(IMAGE_TAG) for turn in turns)
                if tagged != len(images):
                    problems.append(f"{name} line {number}: {tagged} {IMAGE_TAG} tags for {len(images)} images")
                problems += [f"{name} line {number}: missing {path}" for path in images if not (out_dir / path).is_file()]
    return problems


def verl_row(row: Mapping, index: int) -> dict:
    """verl's row (pipeline.train.verl_adapter.to_verl_row) with `<image>` placed and EasyR1's default keys."""
    from pipeline.train.verl_adapter import to_verl_row

    images = row["images"] or []
    prompt = [dict(message) for message in row["prompt"]]
    user = next(i for i in range(len(prompt) - 1, -1, -1) if prompt[i]["role"] == "user")
    prompt[user]["content"] = with_image_tags(prompt[user]["content"], len(images))
    out = to_verl_row({**row, "prompt": prompt, "images": images}, index)
    out["problem"] = prompt[user]["content"]
    return out


def verl_schema(published: pa.Schema) -> pa.Schema:
    """The export's columns, fixed up front so every batch (a batch of null precisions too) writes alike."""
    from pipeline.train.verl_adapter import INDEX_KEY
    from pipeline.verify.model import ANSWER_FIELDS

    published = published.remove_metadata()
    extra = [pa.field(INDEX_KEY, pa.int64())] + [published.field(name) for name in ("problem_id", *ANSWER_FIELDS[1:])]
    return pa.schema(
        list(published)
        + [
            pa.field("data_source", pa.string()),
            pa.field("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
            pa.field("extra_info", pa.struct(extra)),
            pa.field("problem", pa.string()),
        ]
    )


def export_verl(rl_dir: Path, out_dir: Path) -> list[Path]:
    """The RL set as verl / EasyR1 parquet, one file per published shard; rows indexed across the whole set."""
    names, index = [], 0
    with _replacing(out_dir) as staging:
        for path in _shards(rl_dir):
            published = pq.ParquetFile(path)
            schema = verl_schema(published.schema_arrow)
            with pq.ParquetWriter(staging / f"{path.stem}.parquet", schema) as writer:
                for batch in published.iter_batches(batch_size=256):  # one batch in memory at a time
                    rows = [verl_row(row, index + offset) for offset, row in enumerate(batch.to_pylist())]
                    index += len(rows)
                    writer.write_table(pa.Table.from_pylist(rows, schema=schema))
            names.append(f"{path.stem}.parquet")
    return [Path(out_dir) / name for name in names]


EXPORTS: dict[str, tuple[str, Callable[[Path, Path], object]]] = {"cold_start": ("llamafactory", export_sharegpt), "rl": ("verl", export_verl)}


def export_published(set_name: str, published_dir: Path) -> Path | None:
    """The trainer export of a published set, beside it: `<datasets>/<set>-<format>/`. An empty set has none
    (None), and the export of an earlier run's set is removed: it would no longer match the set."""
    kind, export = EXPORTS[set_name]
    out_dir = Path(published_dir).parent / f"{set_name}-{kind}"
    if not published_rows(published_dir):
        shutil.rmtree(out_dir, ignore_errors=True)
        return None
    export(published_dir, out_dir)
    return out_dir


def export_for_trainers(cold_start_dir: Path | None, rl_dir: Path | None, out_dir: Path) -> dict[str, str]:
    """Both exports under `out_dir` (`llamafactory/`, `verl/`), for the sets that exist; an empty set is not
    exported, its entry says why (the reason on its card)."""
    done = {}
    for set_name, published in (("cold_start", cold_start_dir), ("rl", rl_dir)):
        if published is None:
            continue
        kind, export = EXPORTS[set_name]
        _shards(published)  # a folder that is not a published set is an error, not an empty set
        if not published_rows(published):
            done[kind] = f"skipped, the {set_name} set is empty: {published_empty_reason(published)}"
            continue
        export(published, Path(out_dir) / kind)
        done[kind] = str(Path(out_dir) / kind)
    return done


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Export published sets for LLaMA-Factory (ShareGPT) and verl/EasyR1.")
    parser.add_argument("--cold-start-dir", type=Path)
    parser.add_argument("--rl-dir", type=Path)
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(export_for_trainers(args.cold_start_dir, args.rl_dir, args.out_dir), indent=2))


if __name__ == "__main__":
    main()
