"""Push a dataset folder to the Hugging Face Hub, with retries, or write what a push would send.

The token comes from an environment variable and is passed to the client only: it is never part of
a log line, an error message or the manifest.
"""

from __future__ import annotations

import logging
import os
import random
import time
from pathlib import Path

from pipeline.io import file_sha256, write_json_atomic

log = logging.getLogger(__name__)


class HubPushError(RuntimeError):
    pass


def upload_manifest(folder: Path, repo_id: str) -> dict:
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.name != "upload_manifest.json" and ".cache" not in p.relative_to(folder).parts
    )
    return {
        "repo_id": repo_id,
        "repo_type": "dataset",
        "files": [
            {"path": str(p.relative_to(folder)), "bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in files
        ],
    }


def upload_resumable(api, folder: Path, repo_id: str) -> None:
    """The client's resumable multi-commit upload: a rerun after an interruption skips what is committed.

    huggingface_hub 0.25-1.x call it `upload_large_folder` (its progress lives in the folder's
    `.cache/huggingface/`); from 2.x `upload_folder` itself streams in several commits and resumes.
    """
    if hasattr(api, "upload_large_folder"):
        api.upload_large_folder(repo_id=repo_id, folder_path=str(folder), repo_type="dataset")
    else:
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="dataset")


def push_folder(
    folder: Path,
    repo_id: str,
    *,
    token_env: str = "HF_TOKEN",
    private: bool = True,
    dry_run: bool = False,
    max_attempts: int = 5,
    backoff_s: float = 2.0,
    api=None,
) -> dict:
    """Upload `folder` as dataset `repo_id`; with `dry_run`, only write `upload_manifest.json`."""
    manifest = upload_manifest(folder, repo_id)
    write_json_atomic(folder / "upload_manifest.json", manifest)
    if dry_run:
        log.info("dry run: %d files for %s listed in upload_manifest.json", len(manifest["files"]), repo_id)
        return manifest
    token = os.environ.get(token_env)
    if not token:
        raise HubPushError(f"no Hub token: set the environment variable {token_env}")
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    for attempt in range(1, max_attempts + 1):
        try:
            api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
            upload_resumable(api, folder, repo_id)
            return manifest
        except Exception as error:  # network and HTTP errors alike are retried, then reported
            # Only the error's type: some client errors echo request headers.
            log.warning("push of %s failed (attempt %d/%d): %s", repo_id, attempt, max_attempts, type(error).__name__)
            if attempt == max_attempts:
                raise HubPushError(f"push of {repo_id} failed after {max_attempts} attempts: {type(error).__name__}") from None
            time.sleep(backoff_s * 2 ** (attempt - 1) * (1 + random.random()))
    raise AssertionError("unreachable")
