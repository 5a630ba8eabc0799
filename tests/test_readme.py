"""The README is executable: every command block it marks runnable runs here, at small sizes, so the
README and the code cannot drift apart.

A command block (```bash) is preceded by an HTML comment, which a rendered README does not show:

    <!-- runnable -->                          run it as written
    <!-- runnable: OPTION; OPTION -->          run it after these options
    <!-- not runnable: REASON -->              never run (a GPU, a live server, ...); the reason is required

Options: `replace OLD => NEW` (text substituted before the block runs: small sizes, placeholders),
`fixture NAME` (the test writes the named input first: see `FIXTURES`), `seed RUN ...` (runs/RUN starts as
a copy of runs/default, made just before the first command that names RUN, so a command that only
renames a run reuses the curated one). A block of another language marked `<!-- runnable: file PATH -->`
is written to PATH instead (a config file the commands after it read).

Blocks run in README order, one logical command at a time (bash, -e -o pipefail), in a temporary copy of
the checkout, so `runs/` is private, with `$MMR_DATA_ROOT` pointing to a small copy of the shared data
(`SMALL_SOURCE_ROWS` problems a source, with their recorded outputs), private caches, and one Prefect API
for every command. Each runnable command block is one test; selecting a later block runs the earlier ones
first (their failures are reported by their own tests).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
COMMAND_LANGUAGES = ("bash", "sh", "shell", "console")
SMALL_SOURCE_ROWS = 20  # per source of the small data root (MATH-V: its testmini slice is decontaminated)
SMALL_TESTMINI_ROWS = 4  # MATH-V testmini problems kept (the benchmark evaluation reads them)
OWN_DATA_ROWS = 8  # rows of each "your own data" source
COMMAND_TIMEOUT_S = 600
# A block that fails on this branch for a reason fixed elsewhere: its test is xfail(strict=True), so it
# fails the suite the moment it starts to pass, and the entry goes (key: the block's first command).
EXPECTED_TO_FAIL: dict[str, str] = {}  # block name -> why it fails for now (xfail, strict)

_MARKER = re.compile(r"^<!--\s*(not runnable|runnable)\s*(?::\s*(.*?))?\s*-->$")
_FENCE = re.compile(r"^(\s*)```(\S*)\s*$")


@dataclass
class Block:
    line: int  # 1-based line of the opening fence
    language: str
    text: str
    runnable: bool | None  # None: no marker
    options: list[tuple[str, str]] = field(default_factory=list)  # (verb, argument)
    reason: str = ""  # why a block is not runnable

    @property
    def commands(self) -> list[str]:
        """Logical commands: lines joined across trailing backslashes, comment and blank lines dropped."""
        commands, pending = [], ""
        for line in self.text.splitlines():
            pending += line.strip()
            if pending.endswith("\\"):
                pending = pending[:-1].rstrip() + " "
                continue
            if pending and not pending.startswith("#"):
                commands.append(pending)
            pending = ""
        return commands

    @property
    def name(self) -> str:
        return self.commands[0].split("  #")[0].strip() if self.commands else f"line {self.line}"

    def option_values(self, verb: str) -> list[str]:
        return [argument for option_verb, argument in self.options if option_verb == verb]


def parse_blocks(text: str) -> list[Block]:
    """Every fenced block of a Markdown text, with the marker comment on the line before its fence."""
    lines = text.splitlines()
    blocks, index = [], 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        indent, language = opening.groups()
        end = next(i for i in range(index + 1, len(lines)) if lines[i].strip() == "```")
        body = "\n".join(line[len(indent) :] if line.startswith(indent) else line for line in lines[index + 1 : end])
        block = Block(index + 1, language, body + "\n", None)
        marker = _MARKER.match(_comment_before(lines, index))
        if marker:
            kind, argument = marker[1], (marker[2] or "").strip()
            block.runnable = kind == "runnable"
            if block.runnable:
                block.options = [_option(part) for part in argument.split(";") if part.strip()]
            else:
                block.reason = argument
        blocks.append(block)
        index = end + 1
    return blocks


def _comment_before(lines: list[str], index: int) -> str:
    """The HTML comment that ends on the last non-blank line before line `index` (it may span lines)."""
    end = next((i for i in range(index - 1, -1, -1) if lines[i].strip()), None)
    if end is None or not lines[end].rstrip().endswith("-->"):
        return ""
    start = next((i for i in range(end, -1, -1) if "<!--" in lines[i]), end)
    return " ".join(line.strip() for line in lines[start : end + 1])


def _option(text: str) -> tuple[str, str]:
    verb, _, argument = text.strip().partition(" ")
    if verb not in ("replace", "fixture", "seed", "file"):
        raise ValueError(f"unknown runnable option {verb!r} in {text!r}")
    if verb == "replace" and " => " not in argument:
        raise ValueError(f"replace needs 'OLD => NEW': {text!r}")
    return verb, argument.strip()


class BlockFailed(AssertionError):
    pass


# --- the small inputs the commands run on ------------------------------------------------------------


def _lines(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def small_data_root(shared: Path, out: Path, rows: int = SMALL_SOURCE_ROWS) -> Path:
    """The first `rows` problems of each default source with their recorded outputs, the benchmark files
    the default decontaminates against, and their images: the shared data's layout at a small size."""
    problems = json.loads((shared / "tabmwp" / "problems.json").read_text())
    ids = list(problems)[:rows]
    outputs = json.loads((shared / "tabmwp" / "gpt3_cot_outputs.json").read_text())
    (out / "tabmwp" / "tables").mkdir(parents=True)
    (out / "tabmwp" / "problems.json").write_text(json.dumps({i: problems[i] for i in ids}))
    (out / "tabmwp" / "gpt3_cot_outputs.json").write_text(json.dumps({i: outputs[i] for i in ids if i in outputs}))
    for i in ids:
        shutil.copy(shared / "tabmwp" / "tables" / f"{i}.png", out / "tabmwp" / "tables" / f"{i}.png")
    for name in ("test.jsonl", "example_model_solutions.jsonl"):  # recorded solutions are keyed by line
        _write_lines(out / "gsm8k" / name, _lines(shared / "gsm8k" / name)[:rows])
    test = _lines(shared / "mathvision" / "test.jsonl")[:rows]
    chosen = {json.loads(line)["id"] for line in test}
    testmini = [line for line in _lines(shared / "mathvision" / "testmini.jsonl") if json.loads(line)["id"] in chosen]
    _write_lines(out / "mathvision" / "test.jsonl", test)
    _write_lines(out / "mathvision" / "testmini.jsonl", testmini[:SMALL_TESTMINI_ROWS])
    (out / "mathvision" / "images").mkdir()
    for line in test:
        image = json.loads(line)["image"]
        shutil.copy(shared / "mathvision" / image, out / "mathvision" / image)
    for outputs_file in (shared / "mathvision" / "outputs").glob("*.jsonl"):
        kept = [line for line in _lines(outputs_file) if json.loads(line)["id"] in chosen]
        _write_lines(out / "mathvision" / "outputs" / outputs_file.name, kept)
    vista = json.loads((shared / "mathvista" / "testmini.json").read_text())
    (out / "mathvista").mkdir()
    (out / "mathvista" / "testmini.json").write_text(json.dumps({k: vista[k] for k in list(vista)[:rows]}))
    logic = json.loads((shared / "logicvista" / "dataset.json").read_text())  # an evaluation and decontam benchmark
    kept_logic = {k: logic[k] for k in list(logic)[:rows]}
    (out / "logicvista" / "images").mkdir(parents=True)
    (out / "logicvista" / "dataset.json").write_text(json.dumps(kept_logic))
    for row in kept_logic.values():
        shutil.copy(shared / "logicvista" / "images" / row["imagename"], out / "logicvista" / "images" / row["imagename"])
    return out


def write_own_data(shared: Path, data_root: Path, rows: int = OWN_DATA_ROWS) -> None:
    """The three layouts of the README's "Your own data", made from real shared problems and outputs:
    `my_figures/` (a JSON object keyed by id, image files, option letters drawn in the figure: MATH-V
    problems outside its testmini), `my_word_problems.jsonl` (GSM8K) and `my_tables/` (a Parquet folder
    whose images are bytes in the Hub's Image feature: TabMWP), each with its model outputs as recordings
    in the generic JSON-lines format."""
    import datasets

    testmini = {json.loads(line)["id"] for line in _lines(shared / "mathvision" / "testmini.jsonl")}
    letters = [
        row
        for row in map(json.loads, _lines(shared / "mathvision" / "test.jsonl"))
        if row["options"] == ["A", "B", "C", "D", "E"] and row["id"] not in testmini
    ][:rows]
    figures = data_root / "my_figures"
    (figures / "images").mkdir(parents=True)
    document = {}
    for row in letters:
        name = f"fig_{row['id']}.jpg"
        shutil.copy(shared / "mathvision" / row["image"], figures / "images" / name)
        document[f"fig_{row['id']}"] = {"question": row["question"], "imagename": name, "answer": row["answer"]}
    (figures / "dataset.json").write_text(json.dumps(document, ensure_ascii=False, indent=1))
    wanted = {row["id"] for row in letters}
    _write_lines(
        figures / "my_model.jsonl",
        [
            json.dumps({"source_id": f"fig_{row['id']}", "response": row["response"]})
            for model in ("Gemini-Pro-CoT", "Qwen-VL-Max-CoT", "InternLM-XComposer2-VL-CoT")
            for row in map(json.loads, _lines(shared / "mathvision" / "outputs" / f"{model}.jsonl"))
            if row["id"] in wanted
        ],
    )

    problems = [json.loads(line) for line in _lines(shared / "gsm8k" / "test.jsonl")[:rows]]
    solutions = [json.loads(line) for line in _lines(shared / "gsm8k" / "example_model_solutions.jsonl")[:rows]]
    _write_lines(
        data_root / "my_word_problems.jsonl",
        [
            json.dumps({"id": f"wp-{i}", "problem": p["question"], "worked_solution": p["answer"].split("####")[0].strip(),
                        "final_answer": p["answer"].split("####")[1].strip()})
            for i, p in enumerate(problems)
        ],
    )
    _write_lines(
        data_root / "my_word_problems.outputs.jsonl",
        [
            json.dumps({"source_id": f"wp-{i}", "question": s["question"], "response": s[key]["solution"]})
            for i, s in enumerate(solutions)
            for key in ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")
        ],
    )

    tables = json.loads((shared / "tabmwp" / "problems.json").read_text())
    ids = list(tables)[:rows]
    outputs = json.loads((shared / "tabmwp" / "gpt3_cot_outputs.json").read_text())
    features = datasets.Features(
        uid=datasets.Value("string"), prompt=datasets.Value("string"), target=datasets.Value("string"),
        options=datasets.List(datasets.Value("string")), image=datasets.Image(),
    )
    table = datasets.Dataset.from_dict(
        {
            "uid": ids,
            "prompt": [tables[i]["question"] for i in ids],
            "target": [tables[i]["answer"] for i in ids],
            "options": [tables[i]["choices"] for i in ids],
            "image": [{"bytes": (shared / "tabmwp" / "tables" / f"{i}.png").read_bytes(), "path": f"{i}.png"} for i in ids],
        },
        features=features,
    )
    (data_root / "my_tables").mkdir()
    table.to_parquet(str(data_root / "my_tables" / "train-00000.parquet"))
    _write_lines(
        data_root / "my_tables.outputs.jsonl",
        [json.dumps({"source_id": i, "response": outputs[i]["output"].replace("\\n", "\n")}) for i in ids],
    )


FIXTURES: dict[str, Callable[[Path, Path, Path], None]] = {
    # a config file for `--config`: the default run again (its finished shards are reused)
    "my_run.yaml": lambda checkout, data_root, shared: (checkout / "my_run.yaml").write_text("run_name: default\n"),
    "own-data": lambda checkout, data_root, shared: write_own_data(shared, data_root),
}


# --- running the blocks ----------------------------------------------------------------------------


def copy_checkout(destination: Path) -> Path:
    """The checkout's files (tracked, and new ones git does not ignore) with the virtual environment
    linked, so `runs/` and every path relative to the checkout are private to the test."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO_ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for relative in filter(None, listed):
        source = REPO_ROOT / relative
        if source.is_file() and not relative.startswith(".venv"):
            (destination / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / relative)
    for venv in (".venv", ".venv-vllm"):
        if (REPO_ROOT / venv).exists():
            (destination / venv).symlink_to((REPO_ROOT / venv).resolve())
    return destination


class ReadmeRunner:
    """Runs a README's blocks in order, each at most once, in one checkout copy."""

    def __init__(self, blocks: list[Block], checkout: Path, data_root: Path, shared: Path, env: dict[str, str]):
        self.blocks, self.checkout, self.data_root, self.shared, self.env = blocks, checkout, data_root, shared, env
        self.outcomes: dict[int, BlockFailed | None] = {}
        self.fixtures_written: set[str] = set()

    def run_through(self, target: Block) -> None:
        """Run every runnable block up to `target`, then raise `target`'s failure, if any."""
        for block in self.blocks:
            if block.runnable and block.line not in self.outcomes:
                try:
                    self._run(block)
                    self.outcomes[block.line] = None
                except BlockFailed as failure:
                    self.outcomes[block.line] = failure
            if block.line == target.line:
                break
        if self.outcomes.get(target.line) is not None:
            raise self.outcomes[target.line]

    def _run(self, block: Block) -> None:
        text = block.text
        for replacement in block.option_values("replace"):
            old, new = (part.strip() for part in replacement.split(" => "))
            if old not in text:
                raise BlockFailed(f"README.md:{block.line}: replace {old!r}: not in the block")
            text = text.replace(old, new)
        for name in block.option_values("fixture"):
            if name not in self.fixtures_written:
                FIXTURES[name](self.checkout, self.data_root, self.shared)
                self.fixtures_written.add(name)
        if block.option_values("file"):
            (self.checkout / block.option_values("file")[0]).write_text(text)
            return
        seeds = [run for value in block.option_values("seed") for run in value.split()]
        for command in Block(block.line, block.language, text, True).commands:
            for run in seeds:
                seeded, default = self.checkout / "runs" / run, self.checkout / "runs" / "default"
                if re.search(rf"\b{re.escape(run)}\b", command) and not seeded.exists() and default.exists():
                    shutil.copytree(default, seeded, symlinks=True)
            self._command(block, command)

    def _command(self, block: Block, command: str) -> None:
        try:
            done = subprocess.run(
                ["bash", "-e", "-o", "pipefail", "-c", command],
                cwd=self.checkout, env=self.env, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise BlockFailed(f"README.md:{block.line}: `{command}` ran past {COMMAND_TIMEOUT_S} s") from None
        if done.returncode != 0:
            output = (done.stdout + done.stderr)[-4000:]
            raise BlockFailed(f"README.md:{block.line}: `{command}` exited {done.returncode}:\n{output}")


def block_env(checkout: Path, data_root: Path, scratch: Path, api_url: str | None) -> dict[str, str]:
    """The environment the README's commands run in: the checkout's venv and code, small data, private
    caches and Prefect home, no progress bars, offline."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "MMR_", "HF_"))}
    env |= {
        "PATH": f"{checkout / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": str(checkout),  # console scripts import this copy, not the editable install's source
        "MMR_DATA_ROOT": str(data_root),
        "MMR_CACHE": str(scratch / "mmr-cache"),
        "HF_DATASETS_CACHE": str(scratch / "hf-datasets"),
        "HF_HUB_OFFLINE": "1",
        "MMR_QUIET": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PREFECT_HOME": str(scratch / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    if api_url:
        env["PREFECT_API_URL"] = api_url  # one API for every command instead of a temporary one each
    return env


def readme_runner(readme_text: str, scratch: Path, shared: Path, api_url: str | None) -> ReadmeRunner:
    checkout = copy_checkout(scratch / "checkout")
    data_root = small_data_root(shared, scratch / "data")
    return ReadmeRunner(parse_blocks(readme_text), checkout, data_root, shared, block_env(checkout, data_root, scratch, api_url))


# --- the tests ---------------------------------------------------------------------------------------

BLOCKS = parse_blocks(README.read_text(encoding="utf-8"))
COMMAND_BLOCKS = [block for block in BLOCKS if block.runnable and not block.option_values("file")]


def test_every_command_block_says_whether_it_runs():
    """A new command block must be marked: runnable, or not runnable with its reason."""
    commands = [block for block in BLOCKS if block.language in COMMAND_LANGUAGES]
    assert commands and all(block.runnable is not None for block in commands), [
        f"README.md:{block.line}" for block in commands if block.runnable is None
    ]
    assert all(block.reason for block in commands if block.runnable is False)
    for block in BLOCKS:
        if block.runnable:
            assert block.language in COMMAND_LANGUAGES or block.option_values("file"), f"README.md:{block.line}"
            assert all(name in FIXTURES for name in block.option_values("fixture")), f"README.md:{block.line}"
    assert set(EXPECTED_TO_FAIL) <= {block.name for block in COMMAND_BLOCKS}


@pytest.fixture(scope="module")
def runner(tmp_path_factory, prefect_harness, data_root) -> ReadmeRunner:
    from prefect.settings import PREFECT_API_URL

    return readme_runner(README.read_text(encoding="utf-8"), tmp_path_factory.mktemp("readme"), data_root, PREFECT_API_URL.value())


@pytest.mark.slow
@pytest.mark.parametrize(
    "block",
    [
        pytest.param(block, marks=[pytest.mark.xfail(strict=True, reason=EXPECTED_TO_FAIL[block.name])] if block.name in EXPECTED_TO_FAIL else [])
        for block in COMMAND_BLOCKS
    ],
    ids=[f"line{block.line}:{block.name}" for block in COMMAND_BLOCKS],
)
def test_readme_block_runs(runner, block):
    runner.run_through(block)


@pytest.mark.slow
def test_the_own_data_run_reads_every_layout_and_replays_its_recordings(runner):
    """After the "Your own data" command: each source's rows all ingested (none quarantined), the options
    drawn in the figure kept as letters, the Parquet image bytes the same image the default run read from
    TabMWP's file, and one generation per recorded line and role."""
    from pipeline.generate.recorded import RecordingConfig
    from pipeline.io import StageDir, read_quarantine

    block = next(block for block in COMMAND_BLOCKS if "my_data.yaml" in block.text)
    runner.run_through(block)
    runs, data_root = runner.checkout / "runs", runner.data_root

    def rows(run: str, stage: str) -> list[dict]:
        return [row for _, table in StageDir(runs / run, stage).iter_tables() for row in table.to_pylist()]

    problems = rows("my_data", "problems")
    assert {name: sum(p["source"] == name for p in problems) for name in ("my_figures", "my_word_problems", "my_tables")} == {
        "my_figures": len(json.loads((data_root / "my_figures" / "dataset.json").read_text())),
        "my_word_problems": len(_lines(data_root / "my_word_problems.jsonl")),
        "my_tables": OWN_DATA_ROWS,
    }
    assert read_quarantine(runs / "my_data", "problems").num_rows == 0
    figures = [p for p in problems if p["source"] == "my_figures"]
    assert all(p["choices"] == list("ABCDE") and p["question_type"] == "multi_choice" and len(p["images"]) == 1 for p in figures)
    tabmwp = {p["source_id"]: p["images"][0]["sha256"] for p in rows("default", "problems") if p["source"] == "tabmwp"}
    tables = [p for p in problems if p["source"] == "my_tables"]
    assert tables and all(p["images"][0]["sha256"] == tabmwp[p["source_id"]] for p in tables)

    config = yaml.safe_load((runner.checkout / "my_data.yaml").read_text())
    recordings = [RecordingConfig(**recording) for recording in config["backend"]["recordings"]]
    expected = {r.source: len(_lines(data_root / r.path)) * len(r.roles) for r in recordings}
    generated = {source: 0 for source in expected}  # shards are named <source>-<index>
    for shard, table in StageDir(runs / "my_data", "generations").iter_tables(columns=["role"]):
        generated[shard.rsplit("-", 1)[0]] += table.num_rows
    # every recording is a sample fixed sampling would replay; the rounds replay those that can change the sets
    counts = yaml.safe_load((runs / "my_data" / "generations" / "stats.json").read_text())["counts"]
    assert sum(counts[f"requests_fixed_{role}"] for role in ("teacher", "rollout")) == sum(expected.values())
    assert all(0 < generated[source] <= expected[source] for source in expected), (generated, expected)


def test_a_recording_line_without_a_response_is_an_error_naming_it(tmp_path):
    from pipeline.generate.recorded import RecordedBackend, RecordingConfig

    (tmp_path / "outputs.jsonl").write_text('{"source_id": 7, "response": "The answer is 5."}\n\n{"source_id": "8"}\n')
    recording = RecordingConfig(source="mine", format="jsonl", path="outputs.jsonl", teacher="my-model")
    with pytest.raises(ValueError, match=r"outputs.jsonl:3: needs a text or integer source_id and a text response"):
        RecordedBackend([recording], tmp_path)


def test_an_edited_command_fails_its_block(tmp_path, data_root):
    """The runner really runs what the README says: a block edited to a command that no longer works
    (an override key misspelt) fails, naming its README line and the command's own error."""
    text = README.read_text(encoding="utf-8")
    original = next(block for block in COMMAND_BLOCKS if "ingest.shard_size=2000" in block.text)
    mutated_text = text.replace("ingest.shard_size=2000", "ingest.shard_sise=2000", 1)
    runner = readme_runner(mutated_text, tmp_path, data_root, api_url=None)
    mutated = next(block for block in runner.blocks if block.line == original.line)
    runner.outcomes |= {block.line: None for block in runner.blocks if block.line < mutated.line}  # only this one
    with pytest.raises(BlockFailed) as failure:
        runner.run_through(mutated)
    assert f"README.md:{original.line}" in str(failure.value)
    assert "ingest.shard_sise: unknown key (did you mean ingest.shard_size?)" in str(failure.value)


def test_blocks_are_parsed_with_their_markers_options_and_continued_lines():
    text = (
        "<!-- runnable: replace 50 => 1; seed demo big; fixture my_run.yaml -->\n```bash\nmake a N=50\n"
        "# a comment\nRUN=demo make b \\\n    --flag\n```\n\n<!-- not runnable: needs a GPU -->\n```bash\nx\n```\n"
        "  <!-- runnable: file conf.yaml -->\n  ```yaml\n  a: 1\n  ```\n```\nlayout\n```\n"
    )
    first, gpu, config, plain = parse_blocks(text)
    assert (first.line, first.runnable, first.commands) == (2, True, ["make a N=50", "RUN=demo make b --flag"])
    assert first.options == [("replace", "50 => 1"), ("seed", "demo big"), ("fixture", "my_run.yaml")]
    assert (gpu.runnable, gpu.reason, config.option_values("file"), config.text) == (False, "needs a GPU", ["conf.yaml"], "a: 1\n")
    assert plain.runnable is None and plain.language == ""
    with pytest.raises(ValueError, match="unknown runnable option 'sed'"):
        parse_blocks("<!-- runnable: sed demo -->\n```bash\nx\n```\n")

