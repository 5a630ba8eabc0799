"""Generation through OpenAI-compatible chat endpoints (`vllm serve`, or any compatible server).

Data parallel: every endpoint serving a request's model pulls from one shared queue with its own
bounded number of in-flight requests, so faster servers take more work. Transient failures
(connection errors, timeouts, 429, 5xx, malformed JSON) are retried with exponential backoff and
jitter, honouring `Retry-After`; after `max_retries` the request becomes a failed result with its
reason, and the rest of the batch goes on.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
from pydantic import BaseModel, Field

from pipeline.generate.base import GenerationBackend, GenerationRequest, GenerationResult, TeacherConfig


class Endpoint(BaseModel):
    url: str  # base URL including /v1, e.g. http://127.0.0.1:8000/v1
    model: str | None = None  # the model it serves; None: any
    max_concurrency: int = 32


class OpenAIServerConfig(BaseModel):
    endpoints: list[Endpoint] = Field(default_factory=list)
    api_key_env: str | None = None  # read from the environment, sent as a bearer token, never logged
    timeout_s: float = 600.0
    max_retries: int = 5
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    max_retry_after_s: float = 300.0


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


def chat_payload(request: GenerationRequest) -> dict:
    payload = {
        "model": request.model,
        "messages": openai_messages(request),
        "temperature": request.sampling.temperature,
        "top_p": request.sampling.top_p,
        "max_tokens": request.sampling.max_tokens,
        "n": 1,  # one HTTP request per sample index: each is cached and retried on its own
    }
    if request.seed is not None:
        payload["seed"] = request.seed
    return payload


def parse_completion(request_id: str, body: object) -> GenerationResult:
    try:
        choice = body["choices"][0]
        text = choice["message"]["content"]
        usage = body.get("usage") or {}
        if not isinstance(text, str):
            raise TypeError("content is not a string")
        return GenerationResult(
            request_id,
            text,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
        )
    except (KeyError, IndexError, TypeError, AttributeError) as error:
        raise RetryableError("malformed_response", f"{type(error).__name__}: {error}") from None


def retry_after_seconds(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to backoff


@dataclass
class _Job:
    index: int
    request: GenerationRequest


class OpenAIServerBackend(GenerationBackend):
    def __init__(self, teachers: Sequence[TeacherConfig], config: OpenAIServerConfig):
        super().__init__(teachers)
        if not config.endpoints:
            raise ValueError("the openai backend needs at least one endpoint")
        self.config = config
        self._random = random.Random()

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        return asyncio.run(self._generate(list(requests)))

    def _endpoints_for(self, model: str) -> list[Endpoint]:
        endpoints = [e for e in self.config.endpoints if e.model in (None, model)]
        if not endpoints:
            raise ValueError(f"no endpoint serves model {model!r}")
        return endpoints

    async def _generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        results: list[GenerationResult | None] = [None] * len(requests)
        headers = {}
        if self.config.api_key_env and os.environ.get(self.config.api_key_env):
            headers["Authorization"] = f"Bearer {os.environ[self.config.api_key_env]}"
        queues: dict[str, asyncio.Queue] = {}
        for index, request in enumerate(requests):
            queues.setdefault(request.model, asyncio.Queue()).put_nowait(_Job(index, request))
        limits = httpx.Limits(max_connections=sum(e.max_concurrency for e in self.config.endpoints))
        async with httpx.AsyncClient(headers=headers, limits=limits, timeout=self.config.timeout_s) as client:
            workers = [
                self._worker(client, endpoint, queue, results)
                for model, queue in queues.items()
                for endpoint in self._endpoints_for(model)
                for _ in range(endpoint.max_concurrency)
            ]
            await asyncio.gather(*workers)
        return results  # type: ignore[return-value]

    async def _worker(self, client: httpx.AsyncClient, endpoint: Endpoint, queue: asyncio.Queue, results: list) -> None:
        while True:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            results[job.index] = await self._with_retries(client, endpoint, job.request)

    async def _with_retries(self, client: httpx.AsyncClient, endpoint: Endpoint, request: GenerationRequest) -> GenerationResult:
        last: RetryableError | None = None
        for attempt in range(self.config.max_retries + 1):
            if last is not None:
                await asyncio.sleep(self._delay(attempt, last.retry_after_s))
            try:
                return await self._send(client, endpoint, request)
            except RetryableError as error:
                last = error
            except PermanentError as error:
                return GenerationResult(request.request_id, None, error=str(error))
        return GenerationResult(
            request.request_id, None, error=f"{last.kind}: {last.detail} (gave up after {self.config.max_retries + 1} attempts)"
        )

    def _delay(self, attempt: int, retry_after_s: float | None) -> float:
        if retry_after_s is not None:
            return min(retry_after_s, self.config.max_retry_after_s)
        ceiling = min(self.config.backoff_max_s, self.config.backoff_base_s * 2 ** (attempt - 1))
        return ceiling * (0.5 + 0.5 * self._random.random())  # jitter: retries of a burst spread out

    async def _send(self, client: httpx.AsyncClient, endpoint: Endpoint, request: GenerationRequest) -> GenerationResult:
        try:
            response = await client.post(f"{endpoint.url.rstrip('/')}/chat/completions", json=chat_payload(request))
        except httpx.TimeoutException as error:
            raise RetryableError("timeout", type(error).__name__) from None
        except httpx.TransportError as error:
            raise RetryableError("connection_error", type(error).__name__) from None
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryableError(f"http_{response.status_code}", response.text[:200], retry_after_seconds(response))
        if response.status_code >= 400:
            raise PermanentError(f"http_{response.status_code}: {response.text[:200]}")
        try:
            body = response.json()
        except ValueError:
            raise RetryableError("malformed_response", f"not JSON: {response.text[:80]!r}") from None
        return parse_completion(request.request_id, body)
