"""A local OpenAI-compatible chat server for tests: scripted failures, counts, bounded, loopback only.

The behaviour of a request is chosen by a word in its user message (`mode:<name>`), by `shape_of` (for
real problems, whose text carries no mode word), or at random for load tests; every request received is
recorded with its payload key, time and payload. The reasoning shapes answer as reasoning servers do.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# How reasoning servers answer:
#   reasoning              current vLLM with --reasoning-parser: message.reasoning beside the content
#   reasoning_content      SGLang, DeepSeek's API, vLLM before the rename: message.reasoning_content
#   inline                 no parser: <think>...</think> then the answer, in the content
#   inline_open_in_prompt  the chat template opened <think> in the prompt: the content has only </think>
#   truncated              cut off while thinking: finish_reason "length", content null, the thinking only
#   plain                  a model that does not think: the answer alone, no reasoning tokens reported
REASONING_SHAPES = ("reasoning", "reasoning_content", "inline", "inline_open_in_prompt", "truncated", "plain")


def thinking_for(seed) -> str:
    return f"First I restate the problem (seed {seed}), then I check each step twice."


def reasoning_reply(shape: str, thinking: str, answer: str, max_tokens: int) -> dict:
    """The response body of a reasoning server in `shape`, usage with reasoning tokens as OpenAI reports them."""
    thinking_tokens, answer_tokens = len(thinking.split()), len(answer.split())
    message, finish, completion_tokens = {"role": "assistant", "content": answer}, "stop", thinking_tokens + answer_tokens
    if shape in ("reasoning", "reasoning_content"):
        message[shape] = thinking
    elif shape == "inline":
        message["content"] = f"<think>\n{thinking}\n</think>\n\n{answer}"
    elif shape == "inline_open_in_prompt":
        message["content"] = f"{thinking}\n</think>\n\n{answer}"
    elif shape == "truncated":
        message, finish, completion_tokens = {"role": "assistant", "content": None, "reasoning": thinking}, "length", max_tokens
    usage = {"prompt_tokens": 11, "completion_tokens": completion_tokens, "completion_tokens_details": {"reasoning_tokens": thinking_tokens}}
    if shape == "plain":
        usage = {"prompt_tokens": 11, "completion_tokens": answer_tokens}
    return {"choices": [{"message": message, "finish_reason": finish}], "usage": usage}


class FakeOpenAI(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        delay_s: float = 0.0,
        chaos: float = 0.0,
        seed: int = 0,
        shape_of: Callable[[str], str] | None = None,  # user text -> mode, where it has no mode word
        answer_of: Callable[[str, int | None], str] | None = None,  # (user text, seed) -> the final answer (default: the seed)
    ):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.delay_s, self.chaos = delay_s, chaos
        self.shape_of, self.answer_of = shape_of, answer_of
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.received: list[tuple[str, float]] = []  # (payload key, time)
        self.payloads: list[dict] = []  # every request body, in arrival order
        self.attempts: dict[str, int] = {}
        self.in_flight = self.max_in_flight = 0  # requests being answered now / at most at once

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def record(self, key: str, payload: dict) -> int:
        with self.lock:
            self.received.append((key, time.monotonic()))
            self.payloads.append(payload)
            self.attempts[key] = self.attempts.get(key, 0) + 1
            return self.attempts[key]


def payload_key(payload: dict) -> str:
    return json.dumps([payload["messages"], payload.get("seed")], sort_keys=True)


class _Handler(BaseHTTPRequestHandler):
    server: FakeOpenAI

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def _reply(self, status: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        with self.server.lock:
            self.server.in_flight += 1
            self.server.max_in_flight = max(self.server.max_in_flight, self.server.in_flight)
        try:
            self._answer()
        finally:
            with self.server.lock:
                self.server.in_flight -= 1

    def _answer(self) -> None:
        payload = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        key = payload_key(payload)
        attempt = self.server.record(key, payload)
        user = payload["messages"][-1]["content"]
        text = user if isinstance(user, str) else user[-1]["text"]
        mode = text.split("mode:")[1].split()[0] if "mode:" in text else self.server.shape_of(text) if self.server.shape_of else "ok"
        if self.server.chaos and mode == "ok":
            with self.server.lock:
                roll = self.server.random.random()
            mode = "drop" if roll < self.server.chaos else "429" if roll < 2 * self.server.chaos else "500" if roll < 3 * self.server.chaos else "ok"
        time.sleep(self.server.delay_s)
        if mode == "500" or mode == "always500":
            return self._reply(500, b'{"error": "boom"}')
        if mode == "429" or (mode == "429once" and attempt == 1):
            return self._reply(429, b'{"error": "slow down"}', {"Retry-After": "0" if mode == "429" else "1"})
        if mode == "hang":
            time.sleep(3)
        if mode == "badjson":
            return self._reply(200, b"{not json")
        if mode == "drop":
            self.close_connection = True
            self.connection.close()  # no response at all
            return
        answer = f"So the answer is \\boxed{{{self.server.answer_of(text, payload.get('seed')) if self.server.answer_of else payload.get('seed')}}}."
        if mode in REASONING_SHAPES:
            max_tokens = payload.get("max_tokens", payload.get("max_completion_tokens"))
            return self._reply(200, json.dumps(reasoning_reply(mode, thinking_for(payload.get("seed")), answer, max_tokens)).encode())
        answer = f"<think>echo</think> {answer}"
        body = {
            "choices": [{"message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 11, "completion_tokens": 7},
        }
        self._reply(200, json.dumps(body).encode())


@contextmanager
def fake_openai(**kwargs):
    server = FakeOpenAI(**kwargs)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
