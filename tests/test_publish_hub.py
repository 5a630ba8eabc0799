"""Hub push: retries then succeeds, dry run lists exactly what would go up, the token never leaks."""

from __future__ import annotations

import json
import logging

import pytest

from pipeline.publish.dataset import file_groups
from pipeline.publish.hub import HubPushError, push_folder

TOKEN = "hf_PLANTEDsecretTOKEN1234567890"


class FlakyHub:
    """Stand-in for `huggingface_hub.HfApi` (no network here): fails `failures` times, then works."""

    def __init__(self, failures: int):
        self.failures, self.uploads = failures, []

    def create_repo(self, repo_id, **kwargs):
        if self.failures:
            self.failures -= 1
            raise ConnectionError(f"connection reset, Authorization: Bearer {TOKEN}")

    def upload_folder(self, folder_path, repo_id, repo_type):  # huggingface_hub 2.x: resumable itself
        self.uploads.append((folder_path, repo_id, repo_type))


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train-00000-of-00001.parquet").write_bytes(b"PAR1 rows PAR1")
    (tmp_path / "README.md").write_text("# card\n")
    return tmp_path


def test_push_retries_and_never_logs_the_token(folder, monkeypatch, caplog):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub = FlakyHub(failures=2)
    with caplog.at_level(logging.DEBUG):
        push_folder(folder, "org/set", api=hub, backoff_s=0.01)
    assert hub.uploads == [(str(folder), "org/set", "dataset")]
    assert "attempt 2/5" in caplog.text
    assert TOKEN not in caplog.text and TOKEN not in (folder / "upload_manifest.json").read_text()


def test_push_gives_up_with_a_clear_error(folder, monkeypatch, caplog):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with pytest.raises(HubPushError) as error, caplog.at_level(logging.DEBUG):
        push_folder(folder, "org/set", api=FlakyHub(failures=10), max_attempts=3, backoff_s=0.01)
    assert "after 3 attempts" in str(error.value) and TOKEN not in str(error.value) and TOKEN not in caplog.text


def test_dry_run_writes_the_manifest_and_needs_no_token(folder, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    manifest = push_folder(folder, "org/set", dry_run=True)
    assert [f["path"] for f in manifest["files"]] == ["README.md", "data/train-00000-of-00001.parquet"]
    assert json.loads((folder / "upload_manifest.json").read_text()) == manifest


def test_missing_token_is_a_clear_error(folder, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(HubPushError, match="HF_TOKEN"):
        push_folder(folder, "org/set", api=FlakyHub(0))


def test_published_files_pack_consecutive_shards_under_the_size_cap():
    assert file_groups([100, 200, 300, 50, 600, 10], max_bytes=500) == [[0, 1], [2, 3], [4], [5]]
    assert file_groups([], max_bytes=500) == []
