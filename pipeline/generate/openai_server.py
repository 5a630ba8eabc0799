"""Generation through OpenAI-compatible chat endpoints (`vllm serve`, or any compatible server).

Data parallel: every endpoint serving a request's model pulls from one shared queue with its own
bounded number of in-flight requests, so faster servers take more work, and a retry goes back to
that queue, so a live server takes over from a dead one. Transient failures (connection errors,
timeouts, 429, 5xx, malformed JSON) are retried with exponential backoff and jitter, honouring
`Retry-After`; after `max_retries` the request becomes a failed result with its reason, and the rest
of the batch goes on. When every endpoint of a model refuses connections, the call raises
`EndpointsDown` instead: a dead server is an outage to fix and rerun, not a reason to fail requests.

A reasoning model's thinking is read from `message.reasoning`, else `message.reasoning_content`, else
split from <think> tags in the content; a reply cut off by its token limit (`finish_reason: "length"`,
content null or not) is a result, never retried. Each endpoint's `server_kind` decides how max_tokens
and the thinking budget are sent (`REQUEST_SHAPES`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import httpx
from pydantic import Field

from pipeline.config_base import StrictConfig
from pipeline.generate.base import (
    GenerationBackend,
    GenerationRequest,
    GenerationResult,
    ReasoningEffort,
    SamplingParams,
    TeacherConfig,
)
from pipeline.generate.reasoning import CUT_OFF, split_reasoning

ServerKind = Literal["vllm", "sglang", "deepseek", "openrouter", "openai"]
REASONING_FIELDS = ("reasoning", "reasoning_content")  # current vLLM and OpenRouter; SGLang, DeepSeek, older vLLM


@dataclass(frozen=True)
class RequestShape:
    """How one kind of server takes a token limit, a thinking budget and a reasoning effort."""

    max_tokens: str  # the field that caps every generated token, the thinking included
    thinking_budget: Callable[[int], dict] | None  # None: no budget in tokens (use reasoning_effort)
    reasoning_effort: Callable[[str], dict]
    efforts: frozenset[str]  # the effort levels it documents


_ALL_EFFORTS = frozenset(get_args(ReasoningEffort))
REQUEST_SHAPES: dict[str, RequestShape] = {
    # `thinking_token_budget` needs the server started with --reasoning-parser (or --reasoning-config);
    # `reasoning_effort` reaches the chat template (and sets enable_thinking = effort != "none").
    "vllm": RequestShape(
        "max_tokens", lambda n: {"thinking_token_budget": n}, lambda e: {"reasoning_effort": e}, _ALL_EFFORTS
    ),
    # The per-request budget needs the server started with --enable-strict-thinking; the effort is a
    # chat-template hint.
    "sglang": RequestShape(
        "max_tokens", lambda n: {"custom_params": {"thinking_budget": n}}, lambda e: {"reasoning_effort": e}, _ALL_EFFORTS
    ),
    # max_tokens counts the thinking; thinking is on by default, "none" turns it off.
    "deepseek": RequestShape(
        "max_tokens", None,
        lambda e: {"thinking": {"type": "disabled"}} if e == "none" else {"reasoning_effort": e}, _ALL_EFFORTS,
    ),  # fmt: skip
    # One of reasoning.max_tokens and reasoning.effort, never both.
    "openrouter": RequestShape(
        "max_tokens", lambda n: {"reasoning": {"max_tokens": n}}, lambda e: {"reasoning": {"effort": e}}, _ALL_EFFORTS - {"max"}
    ),
    # Reasoning models take max_completion_tokens only; the thinking itself is never returned.
    "openai": RequestShape("max_completion_tokens", None, lambda e: {"reasoning_effort": e}, _ALL_EFFORTS - {"max"}),
}


def reasoning_option_errors(sampling: SamplingParams, kind: str) -> list[str]:
    """Why `sampling`'s reasoning options cannot be sent to a `kind` server (empty: they can)."""
    shape, errors = REQUEST_SHAPES[kind], []
    if sampling.thinking_budget is not None and shape.thinking_budget is None:
        errors.append(f"a {kind} server takes no thinking_budget in tokens (set reasoning_effort instead)")
    if sampling.reasoning_effort is not None and sampling.reasoning_effort not in shape.efforts:
        errors.append(f"a {kind} server takes no reasoning_effort {sampling.reasoning_effort!r} (it takes {sorted(shape.efforts)})")
    if kind == "openrouter" and sampling.thinking_budget is not None and sampling.reasoning_effort is not None:
        errors.append("OpenRouter takes a thinking_budget or a reasoning_effort, not both")
    return errors


class Endpoint(StrictConfig):
    url: str  # base URL including /v1, e.g. http://127.0.0.1:8000/v1
    model: str | None = None  # the model it serves; None: any
    max_concurrency: int = 32
    server_kind: ServerKind = "vllm"  # how requests carry max_tokens and the thinking budget (REQUEST_SHAPES)


class OpenAIServerConfig(StrictConfig):
    endpoints: list[Endpoint] = Field(default_factory=list)
    api_key_env: str | None = None  # read from the environment, sent as a bearer token, never logged
    timeout_s: float = 600.0
    max_retries: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    max_retry_after_s: float = 300.0
    endpoints_down_after_s: float = 30.0  # every endpoint refusing connections this long fails the call


class RetryableError(Exception):
    def __init__(self, kind: str, detail: str, retry_after_s: float | None = None):
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail, self.retry_after_s = kind, detail, retry_after_s


class PermanentError(Exception):
    pass


def openai_messages(request: GenerationRequest) -> list[dict]:
    """Chat messages with the problem's images as data URLs ahead of the user's text."""
    messages = []
    for message in request.messages:
        if message["role"] == "user" and request.images:
            parts = [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(image).decode()}}
                for image in request.images
            ]
            messages.append({"role": "user", "content": parts + [{"type": "text", "text": message["content"]}]})
        else:
            messages.append(dict(message))
    return messages


def chat_payload(request: GenerationRequest, server_kind: str) -> dict:
    sampling, shape = request.sampling, REQUEST_SHAPES[server_kind]
    payload = {
        "model": request.model,
        "messages": openai_messages(request),
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        shape.max_tokens: sampling.max_tokens,
        "n": 1,  # one HTTP request per sample index: each is cached and retried on its own
    }
    if request.seed is not None:
        payload["seed"] = request.seed
    if sampling.thinking_budget is not None:
        if shape.thinking_budget is None:  # the config check refuses this before any request is built
            raise ValueError(f"a {server_kind} server takes no thinking_budget in tokens")
        payload |= shape.thinking_budget(sampling.thinking_budget)
    if sampling.reasoning_effort is not None:
        payload |= shape.reasoning_effort(sampling.reasoning_effort)
    return payload


def parse_completion(request_id: str, body: Any) -> GenerationResult:
    """The reply's final content and thinking, apart, with the token counts the server reports. A reply
    cut off by its token limit is a result whatever it holds (retrying would pay for the same overrun)."""
    try:
        choice = body["choices"][0]
        message = choice["message"]
        content = message.get("content")
        if content is not None and not isinstance(content, str):
            raise TypeError("content is not a string")
        separate = next((message[name] for name in REASONING_FIELDS if isinstance(message.get(name), str)), None)
        reasoning, content = (separate, content) if separate is not None else split_reasoning(content)
        if reasoning is None and content is None and choice.get("finish_reason") != CUT_OFF:
            raise TypeError("the reply has neither content nor reasoning")
        usage = body.get("usage") or {}
        return GenerationResult(
            request_id,
            content,
            reasoning=reasoning,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            reasoning_tokens=(usage.get("completion_tokens_details") or {}).get("reasoning_tokens"),
        )
    except (KeyError, IndexError, TypeError, AttributeError) as error:
        raise RetryableError("malformed_response", f"{type(error).__name__}: {error}") from None


def retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to backoff


class EndpointRefused(Exception):
    """One endpoint refused a connection: a fact about the endpoint, not about the request."""


@dataclass
class _Outage:
    since: float  # time.monotonic() of the first refusal in a row
    refusals: int = 0


class EndpointsDown(RuntimeError):
    """Every endpoint serving a model refuses connections: the servers are gone, so the shard fails (its
    finished results stay journaled) instead of recording every remaining request as a failure."""


@dataclass
class _Job:
    index: int
    request: GenerationRequest
    attempts: int = 0
    not_before: float = 0.0  # loop time before which a retry must not be sent


STREAM_POLL_S = 1.0  # longest a finished result waits for the consumer when results come slowly


class OpenAIServerBackend(GenerationBackend):
    def __init__(self, teachers: Sequence[TeacherConfig], config: OpenAIServerConfig, policy: Sequence[TeacherConfig] = ()):
        super().__init__(teachers, policy)
        if not config.endpoints:
            raise ValueError("the openai backend needs at least one endpoint")
        self.config = config
        self._random = random.Random()
        self._outages: dict[str, _Outage] = {}  # endpoints refusing connections now, by url

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        results: list[GenerationResult | None] = [None] * len(requests)
        asyncio.run(self._run(list(requests), results.__setitem__))
        return results  # type: ignore[return-value]

    def stream(self, requests: Sequence[GenerationRequest], chunk_size: int) -> Iterator[GenerationResult]:
        """Every request in flight at once (bounded per endpoint), results as they finish: no barrier between
        chunks, so the servers never idle while the slowest request of a chunk finishes. The event loop runs in
        a thread; the consumer wakes once per `chunk_size` results (or STREAM_POLL_S), not once per result,
        which under the GIL would slow the loop that keeps the requests in flight."""
        requests = list(requests)
        finished: deque[GenerationResult] = deque()
        ready = threading.Condition()
        outcome: dict[str, BaseException | None] = {}  # set when the loop ends: None, or the error it raised

        def deliver(_: int, result: GenerationResult) -> None:
            with ready:
                finished.append(result)
                if len(finished) >= chunk_size:
                    ready.notify()

        loop = asyncio.new_event_loop()
        main = loop.create_task(self._run(requests, deliver))

        def run() -> None:
            error = None
            try:
                loop.run_until_complete(main)
            except BaseException as raised:  # noqa: BLE001  handed to the consumer, which re-raises it
                error = raised
            finally:
                loop.close()
                with ready:
                    outcome["error"] = error
                    ready.notify()

        thread = threading.Thread(target=run, name="openai-stream", daemon=True)
        thread.start()
        try:
            while True:
                with ready:
                    ready.wait_for(lambda: len(finished) >= chunk_size or outcome, timeout=STREAM_POLL_S)
                    batch, ended = list(finished), dict(outcome)
                    finished.clear()
                yield from batch
                if ended:
                    if ended["error"] is not None:
                        raise ended["error"]
                    return
        finally:
            if thread.is_alive():  # the consumer stopped early: cancel what is still in flight
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(main.cancel)
            thread.join()

    def _endpoints_for(self, model: str) -> list[Endpoint]:
        endpoints = [e for e in self.config.endpoints if e.model in (None, model)]
        if not endpoints:
            raise ValueError(f"no endpoint serves model {model!r}")
        return endpoints

    async def _run(self, requests: list[GenerationRequest], deliver: Callable[[int, GenerationResult], None]) -> None:
        headers = {}
        if self.config.api_key_env and os.environ.get(self.config.api_key_env):
            headers["Authorization"] = f"Bearer {os.environ[self.config.api_key_env]}"
        queues: dict[str, asyncio.Queue] = {}
        for index, request in enumerate(requests):
            queues.setdefault(request.model, asyncio.Queue()).put_nowait(_Job(index, request))
        limits = httpx.Limits(max_connections=sum(e.max_concurrency for e in self.config.endpoints))
        async with httpx.AsyncClient(headers=headers, limits=limits, timeout=self.config.timeout_s) as client:
            try:
                async with asyncio.TaskGroup() as group:  # one worker failing (EndpointsDown) cancels the rest
                    for model, jobs in queues.items():
                        for endpoint in self._endpoints_for(model):
                            for _ in range(endpoint.max_concurrency):
                                group.create_task(self._worker(client, endpoint, jobs, deliver))
            except* EndpointsDown as group_error:
                raise group_error.exceptions[0] from None

    async def _worker(self, client: httpx.AsyncClient, endpoint: Endpoint, jobs: asyncio.Queue, deliver) -> None:
        """Pull jobs of one model until none is left; a retry goes back to the shared queue, so a healthy
        endpoint can take over the work of one that is down."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                job = jobs.get_nowait()
            except asyncio.QueueEmpty:
                return
            if job.not_before > loop.time():
                await asyncio.sleep(job.not_before - loop.time())
            try:
                result = await self._send(client, endpoint, job.request)
            except PermanentError as error:
                result = GenerationResult(job.request.request_id, None, error=str(error))
            except EndpointRefused:
                # The endpoint is down, not the request: hand the job back uncharged for a live endpoint (or
                # this one, once back) and stop pulling work from here for a growing while.
                jobs.put_nowait(job)
                outage = self._outages[endpoint.url]
                self._raise_if_all_down(job.request.model)
                await asyncio.sleep(self._delay(outage.refusals, None))
                continue
            except RetryableError as error:
                job.attempts += 1
                if job.attempts > self.config.max_retries:
                    result = GenerationResult(
                        job.request.request_id, None,
                        error=f"{error.kind}: {error.detail} (gave up after {job.attempts} attempts)",
                    )  # fmt: skip
                else:
                    job.not_before = loop.time() + self._delay(job.attempts, error.retry_after_s)
                    jobs.put_nowait(job)
                    continue
            deliver(job.index, result)

    def _raise_if_all_down(self, model: str) -> None:
        """EndpointsDown once every endpoint of `model` has refused connections for `endpoints_down_after_s`."""
        endpoints = self._endpoints_for(model)
        outages = [outage for e in endpoints if (outage := self._outages.get(e.url)) is not None]
        if len(outages) == len(endpoints):
            down_for = time.monotonic() - max(outage.since for outage in outages)
            if down_for >= self.config.endpoints_down_after_s:
                urls = ", ".join(e.url for e in endpoints)
                raise EndpointsDown(f"every endpoint serving {model!r} refuses connections ({urls}) for {down_for:.1f} s")

    def _delay(self, attempt: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return min(retry_after_s, self.config.max_retry_after_s)
        ceiling = min(self.config.backoff_max_s, self.config.backoff_base_s * 2 ** (attempt - 1))
        return ceiling * (0.5 + 0.5 * self._random.random())  # jitter: retries of a burst spread out

    async def _send(self, client: httpx.AsyncClient, endpoint: Endpoint, request: GenerationRequest) -> GenerationResult:
        payload = chat_payload(request, endpoint.server_kind)
        try:
            response = await client.post(f"{endpoint.url.rstrip('/')}/chat/completions", json=payload)
        except httpx.TimeoutException as error:
            raise RetryableError("timeout", type(error).__name__) from None
        except httpx.ConnectError:  # nothing listens: the server is down (or not up yet)
            outage = self._outages.setdefault(endpoint.url, _Outage(time.monotonic()))
            outage.refusals += 1
            raise EndpointRefused(endpoint.url) from None
        except httpx.TransportError as error:  # dropped mid-request: the server is up but failed this one
            raise RetryableError("connection_error", type(error).__name__) from None
        self._outages.pop(endpoint.url, None)
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryableError(f"http_{response.status_code}", response.text[:200], retry_after_seconds(response))
        if response.status_code >= 400:
            raise PermanentError(f"http_{response.status_code}: {response.text[:200]}")
        try:
            body = response.json()
        except ValueError:
            raise RetryableError("malformed_response", f"not JSON: {response.text[:80]!r}") from None
        return parse_completion(request.request_id, body)
