"""Tests of the local Hub endpoint (tests/hub_server/): the REAL huggingface_hub client over real HTTP, no mocks."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    get_hf_file_metadata,
    hf_hub_download,
    hf_hub_url,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.hub_server import READ_TOKEN, WRITE_TOKEN, HubServer, make_repo

REPO_ROOT = Path(__file__).resolve().parents[1]

UNET_CONFIG = {"_class_name": "UNet2DConditionModel", "sample_size": 64, "in_channels": 4}
TRANSFORMER_CONFIG = {"_class_name": "SD3Transformer2DModel", "num_layers": 2}


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def pipeline_files(class_name: str = "StableDiffusionPipeline") -> dict[str, str | bytes]:
    return {
        "model_index.json": json.dumps({"_class_name": class_name, "unet": ["diffusers", "UNet2DConditionModel"]}),
        "unet/config.json": json.dumps(UNET_CONFIG),
        "unet/diffusion_pytorch_model.safetensors": b"\x00" * 2048,
        "scheduler/scheduler_config.json": json.dumps({"_class_name": "DDIMScheduler"}),
    }


def resolve_gets(server: HubServer) -> list[tuple[str, str]]:
    return server.resolved_files()


def requests_matching(server: HubServer, method: str, prefix: str) -> list[tuple[str, str, int]]:
    return [r for r in server.request_log if r[0] == method and r[1].startswith(prefix)]


# ------------------------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------------------------


def test_model_info_sha_siblings_and_sha_changes_after_write(hub_server, hub_root):
    make_repo(hub_root, "org/pipe", pipeline_files())
    api = HfApi()
    info = api.model_info("org/pipe")
    assert info.id == "org/pipe"
    assert len(info.sha) == 40
    assert sorted(s.rfilename for s in info.siblings) == sorted(pipeline_files())
    assert info.library_name == "diffusers" and info.pipeline_tag == "text-to-image"
    assert {"diffusers", "text-to-image", "diffusers:StableDiffusionPipeline"} <= set(info.tags)
    assert info.downloads == 0 and info.likes == 0 and info.private is False and info.gated is False
    assert info.last_modified is not None and info.created_at is not None

    detailed = api.model_info("org/pipe", files_metadata=True)
    by_name = {s.rfilename: s for s in detailed.siblings}
    cfg = json.dumps(UNET_CONFIG).encode()
    assert by_name["unet/config.json"].size == len(cfg)
    assert by_name["unet/config.json"].blob_id == git_blob_sha1(cfg)

    # Same content => same sha, also for a second server over the same folder (stable across restarts).
    with HubServer(hub_root) as other:
        assert httpx2.get(f"{other.url}/api/models/org/pipe").json()["sha"] == info.sha
    assert api.model_info("org/pipe", revision=info.sha).sha == info.sha
    assert api.repo_info("org/pipe").sha == info.sha

    commit = api.upload_file(path_or_fileobj=b"hello", path_in_repo="notes/a.txt", repo_id="org/pipe",
                             token=WRITE_TOKEN)
    after = api.model_info("org/pipe")
    assert after.sha != info.sha
    assert commit.oid == after.sha
    assert "notes/a.txt" in {s.rfilename for s in after.siblings}
    assert (hub_root / "models/org/pipe/notes/a.txt").read_bytes() == b"hello"
    # The old sha stays a revision, as on the Hub: its files as they were, the new one absent.
    old = api.model_info("org/pipe", revision=info.sha)
    assert old.sha == info.sha and "notes/a.txt" not in {s.rfilename for s in old.siblings}
    assert Path(hf_hub_download("org/pipe", "model_index.json", revision=info.sha)).is_file()
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download("org/pipe", "notes/a.txt", revision=info.sha)
    with pytest.raises(RevisionNotFoundError):
        api.model_info("org/pipe", revision="0" * 40)


def test_not_found_errors(hub_server, hub_root):
    make_repo(hub_root, "org/pipe", pipeline_files())
    api = HfApi()
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("org/missing")
    with pytest.raises(RevisionNotFoundError):
        api.model_info("org/pipe", revision="v9.9")
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download("org/pipe", "nope/config.json")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/missing", "config.json")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("org/pipe", "model_index.json", revision="v9.9")
    assert api.file_exists("org/pipe", "unet/config.json")
    assert not api.file_exists("org/pipe", "unet/nope.json")
    assert api.repo_exists("org/pipe") and not api.repo_exists("org/missing")
    # A stray file at org level is not a repo.
    (hub_root / "models" / "README.md").write_text("not a repo")
    assert [m.id for m in api.list_models()] == ["org/pipe"]


def test_card_data_and_tags_from_readme(hub_server, hub_root):
    readme = "---\nlicense: apache-2.0\nbase_model: org/base\ntags:\n- art\n---\n# Card\n"
    make_repo(hub_root, "org/card", {"README.md": readme, "transformer/config.json": json.dumps(TRANSFORMER_CONFIG)})
    info = HfApi().model_info("org/card")
    assert info.card_data["license"] == "apache-2.0"
    # transformer-only repo => diffusers text-to-image
    assert info.library_name == "diffusers" and info.pipeline_tag == "text-to-image"
    assert {"diffusers", "text-to-image", "art", "license:apache-2.0", "base_model:org/base"} <= set(info.tags)


def test_dataset_info_and_list_datasets(hub_server, hub_root):
    readme = "---\nlicense: mit\ntask_categories:\n- text-to-image\n---\n"
    make_repo(hub_root, "org/pics", {"README.md": readme, "data/train.csv": "a,b\n1,2\n"}, repo_type="dataset",
              meta={"downloads": 7})
    api = HfApi()
    info = api.dataset_info("org/pics")
    assert info.downloads == 7 and len(info.sha) == 40
    assert {"license:mit", "task_categories:text-to-image"} <= set(info.tags)
    assert sorted(s.rfilename for s in info.siblings) == ["README.md", "data/train.csv"]
    assert [d.id for d in api.list_datasets(filter="task_categories:text-to-image")] == ["org/pics"]
    path = hf_hub_download("org/pics", "data/train.csv", repo_type="dataset")
    assert Path(path).read_text() == "a,b\n1,2\n"
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("org/pics")  # it is a dataset, not a model
    assert list(api.list_models()) == []


def test_list_models_filter_sort_limit_and_pagination(hub_server, hub_root):
    downloads = {"org/a": 50, "org/b": 10, "org/c": 40, "other/d": 30, "other/e": 20}
    for i, (rid, n) in enumerate(downloads.items()):
        make_repo(hub_root, rid, pipeline_files(), meta={"downloads": n, "likes": i})
    make_repo(hub_root, "org/text", {"config.json": '{"model_type": "bert"}'},
              meta={"library_name": "transformers", "pipeline_tag": "text-classification", "downloads": 1000})
    api = HfApi()

    top3 = [m.id for m in api.list_models(filter="diffusers", sort="downloads", limit=3)]
    assert top3 == ["org/a", "org/c", "other/d"]
    t2i = [m.id for m in api.list_models(pipeline_tag="text-to-image")]
    assert sorted(t2i) == sorted(downloads)
    assert [m.id for m in api.list_models(filter="text-classification")] == ["org/text"]
    assert [m.id for m in api.list_models(author="other", sort="downloads")] == ["other/d", "other/e"]
    assert [m.id for m in api.list_models(search="text")] == ["org/text"]
    # `library` is a Hub query parameter the client has no keyword for.
    lib = httpx2.get(f"{hub_server.url}/api/models", params={"library": "transformers"}).json()
    assert [m["id"] for m in lib] == ["org/text"]
    asc = httpx2.get(f"{hub_server.url}/api/models", params={"sort": "downloads", "direction": "1"}).json()
    assert [m["id"] for m in asc][:2] == ["org/b", "other/e"]
    full = next(iter(api.list_models(search="org/a", full=True)))
    assert full.sha and {s.rfilename for s in full.siblings} == set(pipeline_files())

    # Pagination through `Link: <...>; rel="next"`.
    hub_server.page_size = 2
    hub_server.clear_log()
    by_likes = [m.id for m in api.list_models(sort="likes")]
    assert by_likes == ["other/e", "other/d", "org/c", "org/b", "org/a", "org/text"]
    assert len(requests_matching(hub_server, "GET", "/api/models")) == 3
    hub_server.clear_log()
    assert len([m.id for m in api.list_models(sort="likes", limit=3)]) == 3
    assert len(requests_matching(hub_server, "GET", "/api/models")) == 2  # islice stops after the 2nd page


def test_list_repo_tree_and_files(hub_server, hub_root):
    make_repo(hub_root, "org/pipe", pipeline_files())
    api = HfApi()
    assert sorted(api.list_repo_files("org/pipe")) == sorted(pipeline_files())
    top = {(e.path, type(e).__name__) for e in api.list_repo_tree("org/pipe")}
    assert top == {("model_index.json", "RepoFile"), ("unet", "RepoFolder"), ("scheduler", "RepoFolder")}
    unet = {e.path: e for e in api.list_repo_tree("org/pipe", path_in_repo="unet")}
    assert set(unet) == {"unet/config.json", "unet/diffusion_pytorch_model.safetensors"}
    assert unet["unet/diffusion_pytorch_model.safetensors"].size == 2048
    everything = {e.path for e in api.list_repo_tree("org/pipe", recursive=True)}
    assert everything == set(pipeline_files()) | {"unet", "scheduler"}
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree("org/pipe", path_in_repo="nope"))
    hub_server.tree_page_size = 2  # paginated tree
    assert sorted(api.list_repo_files("org/pipe")) == sorted(pipeline_files())
    info = {e.path for e in api.get_paths_info("org/pipe", ["unet", "model_index.json", "missing.json"])}
    assert info == {"unet", "model_index.json"}


def test_hf_hub_download_content_and_cache(hub_server, hub_root):
    make_repo(hub_root, "org/pipe", pipeline_files())
    path = hf_hub_download("org/pipe", "unet/config.json")
    assert json.loads(Path(path).read_text()) == UNET_CONFIG
    assert resolve_gets(hub_server) == [("org/pipe", "unet/config.json")]
    heads_before = len(hub_server.resolved_files(include_head=True))

    again = hf_hub_download("org/pipe", "unet/config.json")
    assert again == path
    assert resolve_gets(hub_server) == [("org/pipe", "unet/config.json")]  # no second transfer
    assert len(hub_server.resolved_files(include_head=True)) == heads_before + 1  # only a HEAD


def test_range_requests(hub_server, hub_root):
    make_repo(hub_root, "org/pipe", {"blob.bin": bytes(range(256))})
    url = f"{hub_server.url}/org/pipe/resolve/main/blob.bin"
    r = httpx2.get(url, headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == bytes(range(10, 20))
    assert r.headers["Content-Range"] == "bytes 10-19/256"
    assert httpx2.get(url, headers={"Range": "bytes=-6"}).content == bytes(range(250, 256))
    assert httpx2.get(url, headers={"Range": "bytes=300-"}).status_code == 416
    head = httpx2.head(url)
    assert head.headers["ETag"] == f'"{git_blob_sha1(bytes(range(256)))}"'
    assert head.headers["Content-Length"] == "256" and len(head.headers["X-Repo-Commit"]) == 40


def test_snapshot_download_allow_patterns(hub_server, hub_root):
    make_repo(hub_root, "org/pipe", pipeline_files())
    folder = Path(snapshot_download("org/pipe", allow_patterns=["*.json"]))
    got = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert got == ["model_index.json", "scheduler/scheduler_config.json", "unet/config.json"]
    transferred = resolve_gets(hub_server)
    assert sorted(p for _, p in transferred) == got
    assert not [p for _, p in hub_server.resolved_files(include_head=True) if p.endswith(".safetensors")]

    hub_server.clear_log()
    assert Path(snapshot_download("org/pipe", allow_patterns=["*.json"])) == folder
    assert resolve_gets(hub_server) == []  # second crawl downloads nothing
    assert hub_server.resolved_files(include_head=True) == []


# ------------------------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------------------------


def test_create_repo_commit_upload_and_read_back(hub_server, hub_root, tmp_path):
    api = HfApi(token=WRITE_TOKEN)
    url = api.create_repo("org/new")
    assert url.repo_id == "org/new" and url.startswith(hub_server.url)
    assert api.create_repo("org/new", exist_ok=True).repo_id == "org/new"
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_repo("org/new")
    assert exc.value.response.status_code == 409
    assert api.whoami()["name"] == "test-user"
    assert api.create_repo("mine").repo_id == "test-user/mine"  # no namespace => the token's user

    empty_sha = api.model_info("org/new").sha
    info = api.create_commit(
        "org/new",
        operations=[
            CommitOperationAdd("model_index.json", json.dumps({"_class_name": "StableDiffusionPipeline"}).encode()),
            CommitOperationAdd("unet/config.json", json.dumps(UNET_CONFIG).encode()),
            CommitOperationAdd("tmp/scratch.txt", b"scratch"),
        ],
        commit_message="add pipeline",
    )
    assert info.oid != empty_sha and info.repo_url.repo_id == "org/new"
    api.create_commit("org/new", operations=[CommitOperationDelete("tmp/")], commit_message="rm tmp")
    assert not (hub_root / "models/org/new/tmp").exists()
    local = tmp_path / "folder"
    (local / "vae").mkdir(parents=True)
    (local / "vae/config.json").write_text('{"_class_name": "AutoencoderKL"}')
    api.upload_folder(folder_path=local, repo_id="org/new")
    api.upload_file(path_or_fileobj=b"# card\n", path_in_repo="README.md", repo_id="org/new")

    assert sorted(api.list_repo_files("org/new")) == ["README.md", "model_index.json", "unet/config.json",
                                                      "vae/config.json"]
    assert json.loads(Path(hf_hub_download("org/new", "unet/config.json")).read_text()) == UNET_CONFIG
    new_info = api.model_info("org/new")
    assert new_info.library_name == "diffusers"
    with pytest.raises(EntryNotFoundError):
        api.delete_file("missing.txt", repo_id="org/new")
    with pytest.raises(ValueError, match="Invalid metadata"):
        api.upload_file(path_or_fileobj=b"---\nlicense: [unclosed\n---\n", path_in_repo="README.md",
                        repo_id="org/new")

    # private dataset
    api.create_repo("org/secret", repo_type="dataset", private=True)
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="org/secret", repo_type="dataset")
    anonymous = HfApi()
    with pytest.raises(RepositoryNotFoundError):
        anonymous.dataset_info("org/secret")
    assert list(anonymous.list_datasets()) == []
    assert HfApi(token=READ_TOKEN).dataset_info("org/secret").private is True
    api.delete_repo("org/secret", repo_type="dataset")
    with pytest.raises(RepositoryNotFoundError):
        api.dataset_info("org/secret")


def test_concurrent_commits_lose_nothing(hub_server):
    api = HfApi(token=WRITE_TOKEN)
    api.create_repo("org/busy")
    errors: list[BaseException] = []
    oids: list[str] = []
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        try:
            barrier.wait()
            ops = [CommitOperationAdd(f"w{i}/file{j}.txt", f"{i}-{j}".encode()) for j in range(3)]
            oids.append(api.create_commit("org/busy", operations=ops, commit_message=f"worker {i}").oid)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    files = set(api.list_repo_files("org/busy"))
    assert files == {f"w{i}/file{j}.txt" for i in range(8) for j in range(3)}
    assert len(set(oids)) == 8  # every commit produced a distinct state
    assert api.model_info("org/busy").sha in oids


def test_parent_commit_conflict_is_412(hub_server):
    api = HfApi(token=WRITE_TOKEN)
    api.create_repo("org/race")
    base = api.model_info("org/race").sha
    first = api.create_commit("org/race", [CommitOperationAdd("a.txt", b"a")], commit_message="a",
                              parent_commit=base)
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_commit("org/race", [CommitOperationAdd("b.txt", b"b")], commit_message="b", parent_commit=base)
    assert exc.value.response.status_code == 412
    assert api.list_repo_files("org/race") == ["a.txt"]
    api.create_commit("org/race", [CommitOperationAdd("b.txt", b"b")], commit_message="b", parent_commit=first.oid)
    assert sorted(api.list_repo_files("org/race")) == ["a.txt", "b.txt"]


def test_writes_need_a_write_token(hub_server, hub_root):
    make_repo(hub_root, "org/pipe", pipeline_files())
    with pytest.raises(HfHubHTTPError) as exc:
        HfApi().create_repo("org/x")
    assert exc.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as exc:
        HfApi(token=READ_TOKEN).create_repo("org/x")
    assert exc.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as exc:
        HfApi().upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="org/pipe")
    assert exc.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as exc:
        HfApi(token=READ_TOKEN).upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="org/pipe")
    assert exc.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as exc:
        HfApi(token="hf_bogus").model_info("org/pipe")  # invalid tokens are refused, like on the Hub
    assert exc.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError):
        HfApi(token="hf_bogus").whoami()
    assert HfApi(token=READ_TOKEN).whoami()["auth"]["accessToken"]["role"] == "read"
    assert httpx2.get(f"{hub_server.url}/api/whoami-v2").status_code == 401  # no token
    assert not (hub_root / "models/org/x").exists()
    assert not (hub_root / "models/org/pipe/x.txt").exists()
    # Missing repo for a write => RepositoryNotFoundError
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=WRITE_TOKEN).upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="org/nope")


def test_gated_repo_needs_a_token_with_access(hub_server, hub_root):
    make_repo(hub_root, "org/gated", pipeline_files(), meta={"gated": "manual", "downloads": 3})
    info = HfApi().model_info("org/gated")  # metadata stays public, like on the Hub
    assert info.gated == "manual" and info.downloads == 3
    with pytest.raises(GatedRepoError) as exc:
        hf_hub_download("org/gated", "unet/config.json")
    assert exc.value.response.status_code == 401
    hub_server.gated_denied_tokens.add("hf_denied")
    hub_server.tokens["hf_denied"] = "read"
    with pytest.raises(GatedRepoError) as exc:
        hf_hub_download("org/gated", "unet/config.json", token="hf_denied")
    assert exc.value.response.status_code == 403
    path = hf_hub_download("org/gated", "unet/config.json", token=READ_TOKEN)
    assert json.loads(Path(path).read_text()) == UNET_CONFIG
    assert [m.id for m in HfApi().list_models(gated=True)] == ["org/gated"]


# ------------------------------------------------------------------------------------------------------------------
# Faults
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["500", "502", "503"])
def test_server_error_faults(hub_server, hub_root, kind):
    make_repo(hub_root, "org/pipe", pipeline_files())
    api = HfApi()
    fault = hub_server.inject(kind, repo_id="org/pipe", times=1)
    with pytest.raises(HfHubHTTPError) as exc:
        api.model_info("org/pipe")
    assert exc.value.response.status_code == int(kind)
    assert fault.hits == 1 and hub_server.faults == []
    assert api.model_info("org/pipe").id == "org/pipe"  # recovered

    forever = hub_server.inject(kind, repo_id="org/pipe", path_glob="*.safetensors")
    url = hf_hub_url("org/pipe", "unet/diffusion_pytorch_model.safetensors")
    for _ in range(2):
        with pytest.raises(HfHubHTTPError) as exc:
            get_hf_file_metadata(url)  # no retry by default
        assert exc.value.response.status_code == int(kind)
    assert forever.hits == 2
    assert api.model_info("org/pipe").id == "org/pipe"  # path_glob faults leave API calls alone
    hub_server.clear_faults()
    assert hub_server.faults == []


def test_server_error_fault_recovers_on_client_retry(hub_server, hub_root):
    make_repo(hub_root, "org/pipe", pipeline_files())
    hub_server.inject("503", times=1)  # every request; list_models retries 5xx itself (http_backoff)
    assert [m.id for m in HfApi().list_models()] == ["org/pipe"]
    assert [s for _, p, s in hub_server.request_log if p == "/api/models"] == [503, 200]
    hub_server.inject("500", repo_id="org/pipe", path_glob="unet/config.json", times=1)
    path = hf_hub_download("org/pipe", "unet/config.json")  # hf_hub_download retries the HEAD call
    assert json.loads(Path(path).read_text()) == UNET_CONFIG


@pytest.mark.parametrize("kind,status", [("401", 401), ("403", 403)])
def test_auth_faults_raise_gated_repo_error(hub_server, hub_root, kind, status):
    make_repo(hub_root, "org/pipe", pipeline_files())
    hub_server.inject(kind, repo_id="org/pipe", times=1)
    with pytest.raises(GatedRepoError) as exc:
        HfApi().model_info("org/pipe")
    assert exc.value.response.status_code == status
    hub_server.inject(kind, repo_id="org/pipe", path_glob="*.json", times=1)
    with pytest.raises(GatedRepoError):
        hf_hub_download("org/pipe", "unet/config.json")
    assert Path(hf_hub_download("org/pipe", "unet/config.json")).is_file()  # times=1: next call works


def test_not_found_faults(hub_server, hub_root):
    make_repo(hub_root, "org/pipe", pipeline_files())
    api = HfApi()
    hub_server.inject("404", repo_id="org/pipe", times=1)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("org/pipe")
    hub_server.inject("404", repo_id="org/pipe", path_glob="unet/*", times=1)
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download("org/pipe", "unet/config.json")
    assert api.model_info("org/pipe").id == "org/pipe"
    assert Path(hf_hub_download("org/pipe", "unet/config.json")).is_file()


def test_timeout_faults(hub_server, hub_root):
    make_repo(hub_root, "org/pipe", pipeline_files())
    hub_server.timeout_delay = 2.5  # above the client's HF_HUB_ETAG_TIMEOUT (2 s in conftest)
    api = HfApi()
    hub_server.inject("timeout", repo_id="org/pipe", times=1)
    t0 = time.monotonic()
    with pytest.raises(httpx2.TimeoutException):
        api.model_info("org/pipe", timeout=0.3)
    assert time.monotonic() - t0 < 2.0  # the server did not make the client wait for the whole delay
    assert ("GET", "/api/models/org/pipe", 0) in hub_server.request_log
    assert api.model_info("org/pipe", timeout=5).id == "org/pipe"  # times=1 => recovered

    # other requests are served while a "timeout" request sleeps
    hub_server.inject("timeout", repo_id="org/pipe", path_glob="model_index.json", times=1)
    path = hf_hub_download("org/pipe", "model_index.json")  # HEAD times out (2 s), the client retries
    assert json.loads(Path(path).read_text())["_class_name"] == "StableDiffusionPipeline"


def test_malformed_json_faults(hub_server, hub_root):
    make_repo(hub_root, "org/pipe", pipeline_files())
    api = HfApi()
    hub_server.inject("malformed_json", repo_id="org/pipe", times=1)
    with pytest.raises(json.JSONDecodeError):
        api.model_info("org/pipe")
    assert api.model_info("org/pipe").id == "org/pipe"

    hub_server.inject("malformed_json", repo_id="org/pipe", path_glob="*.json", times=1)
    bad = hf_hub_download("org/pipe", "unet/config.json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(Path(bad).read_text())
    assert hub_server.faults == []  # HEAD peeked, GET used the fault up
    good = hf_hub_download("org/pipe", "unet/config.json")  # a plain retry gets the real file
    assert json.loads(Path(good).read_text()) == UNET_CONFIG
    assert good != bad
    assert hf_hub_download("org/pipe", "unet/config.json") == good  # and keeps it
    # Non-JSON files are not affected.
    hub_server.inject("malformed_json", repo_id="org/pipe", path_glob="*")
    blob = hf_hub_download("org/pipe", "unet/diffusion_pytorch_model.safetensors")
    assert Path(blob).read_bytes() == b"\x00" * 2048


def test_inject_validates_arguments(hub_server):
    with pytest.raises(ValueError):
        hub_server.inject("418")
    with pytest.raises(ValueError):
        hub_server.inject("500", times=0)


# ------------------------------------------------------------------------------------------------------------------
# Jobs
# ------------------------------------------------------------------------------------------------------------------


def test_jobs_api_run_inspect_list_logs_cancel(hub_server, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)
    api = HfApi()
    job = api.run_job(image="python:3.12", command=["python", "-c", "print(1)"], flavor="a10g-small",
                      timeout="2h", secrets={"HF_TOKEN": WRITE_TOKEN}, env={"A": "1"}, labels={"team": "x"})
    assert job.status.stage == "SCHEDULING" and job.owner.name == "test-user" and job.flavor == "a10g-small"
    assert job.secrets == {"HF_TOKEN": None} and job.environment == {"A": "1"}   # secret values never come back
    spec = hub_server.jobs[job.id]["spec"]
    assert spec["secrets"] == {"HF_TOKEN": WRITE_TOKEN} and spec["timeoutSeconds"] == 7200
    assert spec["dockerImage"] == "python:3.12" and spec["labels"]["team"] == "x"
    assert api.inspect_job(job_id=job.id).status.stage == "RUNNING"
    assert api.wait_for_job(job.id, poll_interval=0.01).status.stage == "COMPLETED"
    logs = list(api.fetch_job_logs(job_id=job.id))
    assert "$ python -c print(1)" in logs and not any("Job started" in line for line in logs)
    assert list(api.fetch_job_logs(job_id=job.id, tail=1)) == logs[-1:]

    other = api.run_job(image="python:3.12", command=["sleep", "9"])
    api.cancel_job(job_id=other.id)
    assert api.inspect_job(job_id=other.id).status.stage == "CANCELED"
    assert [j.id for j in api.list_jobs()] == [job.id, other.id]
    assert [j.id for j in api.list_jobs(status="CANCELED")] == [other.id]
    assert [j.id for j in api.list_jobs(labels={"team": "x"})] == [job.id]

    with pytest.raises(HfHubHTTPError) as err:          # another namespace
        api.inspect_job(job_id=job.id, namespace="someone-else")
    assert err.value.response.status_code == 403
    with pytest.raises(HfHubHTTPError) as err:
        api.inspect_job(job_id="0" * 24)
    assert err.value.response.status_code == 404
    with pytest.raises(HfHubHTTPError) as err:          # read-only token
        HfApi(token=READ_TOKEN).run_job(image="python:3.12", command=["true"], namespace="test-user")
    assert err.value.response.status_code == 403
    control = httpx2.get(f"{hub_server.url}/_test/jobs").json()["jobs"]
    assert [(j["id"], j["stage"]) for j in control] == [(job.id, "COMPLETED"), (other.id, "CANCELED")]


# ------------------------------------------------------------------------------------------------------------------
# Control endpoints, hand start, shared fixtures
# ------------------------------------------------------------------------------------------------------------------


def test_http_control_endpoints(hub_server, hub_root):
    make_repo(hub_root, "org/pipe", pipeline_files())
    base = hub_server.url
    r = httpx2.post(f"{base}/_test/faults", json={"kind": "503", "repo_id": "org/pipe", "times": 1})
    assert r.status_code == 200 and r.json()["faults"][0]["kind"] == "503"
    assert httpx2.get(f"{base}/api/models/org/pipe").status_code == 503
    assert httpx2.get(f"{base}/api/models/org/pipe").status_code == 200
    httpx2.post(f"{base}/_test/faults", json=[{"kind": "500"}, {"kind": "404", "path_glob": "*.json"}])
    assert len(httpx2.get(f"{base}/_test/faults").json()["faults"]) == 2
    assert httpx2.delete(f"{base}/_test/faults").status_code == 200
    assert hub_server.faults == []
    assert httpx2.post(f"{base}/_test/faults", json={"kind": "nope"}).status_code == 400
    httpx2.get(f"{base}/org/pipe/resolve/main/unet/config.json")
    log = httpx2.get(f"{base}/_test/log").json()
    assert ["GET", "/api/models/org/pipe", 503] in log["requests"]
    assert log["resolved"] == [["org/pipe", "unet/config.json"]]
    assert not any(p.startswith("/_test/") for _, p, _ in log["requests"])  # control calls are not logged
    httpx2.delete(f"{base}/_test/log")
    assert hub_server.request_log == []


def test_stopped_server_drops_keep_alive_connections(tmp_path):
    root = tmp_path / "root"
    make_repo(root, "org/pipe", {"a.json": "{}"})
    server = HubServer(root).start()
    with httpx2.Client() as client:
        assert client.get(f"{server.url}/api/models/org/pipe").status_code == 200  # pooled connection
        server.stop()
        with pytest.raises(httpx2.TransportError):
            client.get(f"{server.url}/api/models/org/pipe")


def test_start_by_hand(tmp_path):
    root = tmp_path / "root"
    make_repo(root, "org/pipe", pipeline_files())
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.hub_server", "--root", str(root), "--port", "0"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "running at http://" in line, line
        url = line.strip().rsplit(" ", 1)[-1]
        assert [m["id"] for m in httpx2.get(f"{url}/api/models").json()] == ["org/pipe"]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
    assert proc.returncode == 0


def test_fixture_hub_serves_shared_fixtures(fixture_hub):
    api = HfApi()
    ids = {m.id for m in api.list_models(filter="diffusers", pipeline_tag="text-to-image")}
    assert {
        "black-forest-labs/FLUX.1-dev",
        "stabilityai/stable-diffusion-xl-base-1.0",
        "PixArt-alpha/PixArt-Sigma-XL-2-512-MS",  # transformer-only repo
        "stabilityai/stable-diffusion-3.5-medium",
    } <= ids
    info = api.model_info("stabilityai/stable-diffusion-xl-base-1.0")
    assert "unet/config.json" in {s.rfilename for s in info.siblings}
    src = fixture_hub.root / "models/PixArt-alpha/PixArt-Sigma-XL-2-512-MS/transformer/config.json"
    path = hf_hub_download("PixArt-alpha/PixArt-Sigma-XL-2-512-MS", "transformer/config.json")
    assert Path(path).read_bytes() == src.read_bytes()
    assert hashlib.sha256(src.read_bytes()).hexdigest() == (
        "64dcb995e31aa4d84572da705d41088a0be9e94de91e4bf3ca43e05c67a9f942"  # PROVENANCE.md
    )
    # the copy is writable, the shared folder is untouched
    HfApi(token=WRITE_TOKEN).upload_file(path_or_fileobj=b"x", path_in_repo="x.txt",
                                         repo_id="PixArt-alpha/PixArt-Sigma-XL-2-512-MS")
    assert (fixture_hub.root / "models/PixArt-alpha/PixArt-Sigma-XL-2-512-MS/x.txt").exists()
    assert os.environ["HF_ENDPOINT"] == fixture_hub.url


def test_users_commit_authors_history_and_last_commits(hub_server, hub_root):
    alice, bob = hub_server.add_user("alice"), hub_server.add_user("bob")
    assert HfApi(token=alice).whoami()["name"] == "alice" and HfApi(token=bob).whoami()["name"] == "bob"
    assert HfApi(token=WRITE_TOKEN).whoami()["name"] == "test-user"
    api_a, api_b = HfApi(token=alice), HfApi(token=bob)
    assert api_a.create_repo("mine", repo_type="dataset").repo_id == "alice/mine"   # the token's user's namespace
    repo = "org/shared"
    api_a.create_repo(repo, repo_type="dataset")
    first = api_a.create_commit(repo, [CommitOperationAdd("a/x.json", b"1"), CommitOperationAdd("b.txt", b"b")],
                                commit_message="alice adds", repo_type="dataset")
    second = api_b.create_commit(repo, [CommitOperationAdd("a/x.json", b"2"), CommitOperationAdd("c.txt", b"c")],
                                 commit_message="bob overwrites", repo_type="dataset")
    commits = api_a.list_repo_commits(repo, repo_type="dataset")
    assert [c.commit_id for c in commits[:2]] == [second.oid, first.oid]
    assert [c.authors for c in commits[:2]] == [["bob"], ["alice"]] and commits[0].title == "bob overwrites"
    tree = {f.path: f for f in api_a.list_repo_tree(repo, repo_type="dataset", recursive=True, expand=True)
            if hasattr(f, "blob_id")}
    assert tree["a/x.json"].last_commit.oid == second.oid and tree["b.txt"].last_commit.oid == first.oid
    info = {f.path: f for f in api_a.get_paths_info(repo, ["b.txt", "c.txt"], repo_type="dataset", expand=True)}
    assert info["b.txt"].last_commit.oid == first.oid and info["c.txt"].last_commit.oid == second.oid
    # an earlier commit is a revision: its files, its history
    old = Path(hf_hub_download(repo, "a/x.json", repo_type="dataset", revision=first.oid)).read_bytes()
    assert old == b"1" and (hub_root / "datasets" / repo / "a/x.json").read_bytes() == b"2"
    assert [c.commit_id for c in api_a.list_repo_commits(repo, repo_type="dataset", revision=first.oid)][0] == first.oid
    assert sorted(api_a.list_repo_files(repo, repo_type="dataset", revision=first.oid)) == ["a/x.json", "b.txt"]
    # pagination, and a server restarted over the same folder keeps the history
    hub_server.commits_page_size = 1
    assert len(api_a.list_repo_commits(repo, repo_type="dataset")) == len(commits)
    with HubServer(hub_root) as other:
        assert httpx2.get(f"{other.url}/api/datasets/{repo}/commits/main").json()[0]["id"] == second.oid
