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


class FakeHubServer:
    """The Hub's HTTP API as the real client speaks it (repo create, preupload, ndjson commit), behind
    `httpx2.MockTransport`: files are committed for real into `self.files`, and the `interrupt_at`-th
    commit dies like a killed process, after the commits before it were stored."""

    def __init__(self, interrupt_at: int | None = None):
        self.files: dict[str, bytes] = {}
        self.sent: list[list[str]] = []  # paths whose content each commit carried
        self.interrupt_at = interrupt_at

    def handle(self, request):
        import base64

        import httpx2
        from huggingface_hub.utils.sha import git_hash

        path = request.url.path
        if path == "/api/repos/create":
            return httpx2.Response(200, json={"url": "https://hub.test/datasets/org/set"})
        if "/preupload/" in path:
            files = json.loads(request.content)["files"]
            answer = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": git_hash(self.files[f["path"]]) if f["path"] in self.files else None} for f in files]
            return httpx2.Response(200, json={"files": answer})
        if "/commit/" in path:
            if self.interrupt_at is not None and len(self.sent) + 1 == self.interrupt_at:
                raise KeyboardInterrupt  # the pusher is killed mid-upload
            lines = [json.loads(line) for line in request.content.splitlines()]
            added = {line["value"]["path"]: base64.b64decode(line["value"]["content"]) for line in lines if line["key"] == "file"}
            self.files.update(added)
            self.sent.append(sorted(added))
            oid = f"{len(self.sent):040x}"
            return httpx2.Response(200, json={"commitUrl": f"https://hub.test/datasets/org/set/commit/{oid}", "commitOid": oid})
        if request.method == "GET" and path.startswith("/api/datasets/org/set"):  # repo info after a no-op push
            return httpx2.Response(200, json={"id": "org/set", "sha": f"{len(self.sent):040x}", "siblings": []})
        return httpx2.Response(404, json={"error": f"unexpected {request.method} {path}"})


def test_an_interrupted_push_resumes_without_resending_finished_files(tmp_path, monkeypatch):
    import httpx2
    import huggingface_hub
    from huggingface_hub import HfApi, constants

    folder = tmp_path / "set"
    (folder / "data").mkdir(parents=True)
    for index in range(600):  # more files than one commit takes: the client commits in parts
        (folder / "data" / f"train-{index:05d}-of-00600.parquet").write_bytes(f"rows of shard {index}".encode())
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the transport below is the only "network"
    monkeypatch.setattr(constants, "is_offline_mode", lambda: False)
    hub = FakeHubServer(interrupt_at=2)
    huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(hub.handle)))
    try:
        api = HfApi(endpoint="https://hub.test", token=TOKEN)
        with pytest.raises(KeyboardInterrupt):
            push_folder(folder, "org/set", dry_run=False, api=api, backoff_s=0.01)
        first = set(hub.sent[0])
        assert 0 < len(first) < 601 and len(hub.sent) == 1  # one part committed, then killed
        hub.interrupt_at = None
        push_folder(folder, "org/set", dry_run=False, api=api, backoff_s=0.01)
    finally:
        huggingface_hub.set_client_factory(huggingface_hub.utils._http.default_client_factory)
    resent = [path for commit in hub.sent[1:] for path in commit]
    local = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert hub.files == local  # everything arrived, manifest included
    assert len(resent) == len(set(resent)) and set(resent) == set(local) - first  # finished files never resent
