"""Optional answer extraction by a judge model, for what the rules leave undecided.

MathVista's official pipeline and the paper judge free text with a model; the rules here do not guess
where a response gives no marked answer and its closing sentences name no single option (method
"none": "The red block is taller than the blue one."). For exactly those responses, and only those,
a judge model served by any generation backend (OpenAI-compatible server, vLLM in process, recorded)
reads the answer with `EXTRACTION_PROMPT`. It never overrides a rule: a refusal, several options or
conflicting answers stay no answer. Its reply must be a single option letter (multiple choice) or a
short value; anything else is garbage, ignored and counted. Requests are keyed by a content hash
like generation requests (model, messages, sampling) and cached in a JSONL journal, so a rerun asks
the judge nothing it has answered. Off by default (`ModelExtractorConfig.enabled`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from pydantic import Field

from pipeline.config_base import StrictConfig
from pipeline.generate.base import GenerationBackend, GenerationRequest, SamplingParams, request_ids
from pipeline.generate.factory import BackendConfig
from pipeline.generate.journal import append_journal, read_journal
from pipeline.verify.model import MAX_ANSWER_CHARS, Extraction
from pipeline.verify.normalize import normalize_text, parse_number

MODEL_EXTRACTED = "model_extracted"  # extraction method of an answer the judge read
MODEL_GARBAGE = "model_garbage"  # ... of a judge reply that was no answer (the row stays unanswered)
JUDGE_ROLE = "judge"  # the judge's requests are neither teacher CoTs nor policy rollouts

EXTRACTION_PROMPT = """You read a model's response to a question and report the final answer it gives.
Do not solve the question yourself and do not correct the response.

Question: {question}
{options}Response (its last part): {response}

Reply with the final answer only, on one line: {reply_format}
If the response gives no final answer, reply: none"""
_MC_FORMAT = "the letter of the option the response chose (one of {letters})."
_VALUE_FORMAT = "the value alone, without words or units."
_NONE = re.compile(r"^\W*none\W*$", re.IGNORECASE)
_REPLY_LETTER = re.compile(r"^\W*(?:option\s*)?\(?([A-Z])\)?\W*$", re.IGNORECASE)
MAX_VALUE_REPLY_CHARS = 60


class ModelExtractorConfig(StrictConfig):
    enabled: bool = False
    model: str = ""  # the judge model as the backend serves it
    backend: BackendConfig = Field(default_factory=lambda: BackendConfig(kind="openai"))
    max_tokens: int = 16
    response_chars: int = 4000  # the closing part of a response shown to the judge
    cache_path: str | None = None  # JSONL journal of judge replies by request id


def extraction_prompt(question: str | None, response: str, choices: Sequence[str] | None, response_chars: int) -> str:
    options = ""
    reply_format = _VALUE_FORMAT
    if choices:
        letters = [chr(ord("A") + i) for i in range(len(choices))]
        options = "Options:\n" + "".join(f"({letter}) {choice}\n" for letter, choice in zip(letters, choices))
        reply_format = _MC_FORMAT.format(letters=", ".join(letters))
    return EXTRACTION_PROMPT.format(
        question=question or "(not given)", options=options, response=response[-response_chars:], reply_format=reply_format
    )


def parse_reply(reply: str | None, choices: Sequence[str] | None, numeric: bool) -> tuple[str | None, str]:
    """(answer, outcome): outcome "answer", "none" (the judge found no answer) or "garbage" (a reply
    that is no single option or short value: ignored)."""
    lines = [line.strip() for line in (reply or "").strip().splitlines() if line.strip()]
    if len(lines) != 1:
        return None, "garbage"
    line = lines[0]
    if _NONE.match(line):
        return None, "none"
    if choices:
        letter = _REPLY_LETTER.match(line)
        if letter and ord(letter[1].upper()) - ord("A") < len(choices):
            return choices[ord(letter[1].upper()) - ord("A")], "answer"
        options = [normalize_text(choice) for choice in choices]  # or an option's text, whole
        said = normalize_text(line)
        return (choices[options.index(said)], "answer") if options.count(said) == 1 else (None, "garbage")
    if len(line) > MAX_VALUE_REPLY_CHARS or numeric and parse_number(line) is None:
        return None, "garbage"
    return line, "answer"


class ModelExtractor:
    """Fills undecided extractions (method "none") with the judge model's reading, through a backend."""

    def __init__(self, backend: GenerationBackend, config: ModelExtractorConfig):
        self.backend, self.config = backend, config
        self.sampling = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=config.max_tokens, seed=0)
        self.cache_path = Path(config.cache_path) if config.cache_path else None
        self.stats: Counter[str] = Counter()

    def request(self, question: str | None, response: str, choices: Sequence[str] | None) -> GenerationRequest:
        prompt = extraction_prompt(question, response, choices, self.config.response_chars)
        messages = [{"role": "user", "content": prompt}]
        (rid,) = request_ids(self.config.model, messages, [], self.sampling, [0], JUDGE_ROLE)
        return GenerationRequest(
            request_id=rid,
            problem_id=rid,
            teacher="answer-extractor",
            model=self.config.model,
            sample_index=0,
            role=JUDGE_ROLE,
            messages=messages,
            sampling=self.sampling,
        )

    def fill(self, extractions: list[Extraction], items: Sequence) -> list[Extraction]:
        """`extractions` with every "none" replaced by the judge's answer where it gives a usable one."""
        undecided = [i for i, extraction in enumerate(extractions) if extraction.method == "none"]
        if not undecided:
            return extractions
        requests = {i: self.request(getattr(items[i], "question", None), items[i].text, items[i].choices) for i in undecided}
        cached = read_journal(self.cache_path) if self.cache_path else {}
        missing = list({r.request_id: r for r in requests.values() if r.request_id not in cached}.values())
        fresh = self.backend.generate(missing) if missing else []
        if self.cache_path:
            append_journal(self.cache_path, [result for result in fresh if result.error is None])
        replies = cached | {result.request_id: result for result in fresh}
        self.stats["model_requests"] += len(missing)
        self.stats["model_cached"] += len(undecided) - len(missing)
        filled = list(extractions)
        for index, request in requests.items():
            result = replies.get(request.request_id)
            if result is None or result.error is not None:
                self.stats["model_failed"] += 1
                continue
            item = items[index]
            answer, outcome = parse_reply(result.text, item.choices, item.answer_type in ("integer", "float", "fraction"))
            self.stats[f"model_{outcome}"] += 1
            if outcome == "garbage":
                filled[index] = Extraction(None, MODEL_GARBAGE)  # still no answer, but counted per row
            elif answer is not None and len(answer) <= MAX_ANSWER_CHARS:
                filled[index] = Extraction(answer, MODEL_EXTRACTED)
        return filled
