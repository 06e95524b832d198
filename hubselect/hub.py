"""The one place that talks to the Hugging Face Hub.

Everything goes through ``huggingface_hub`` (``HfApi`` and ``hf_hub_download``), so the Hub's
environment conventions hold everywhere: ``HF_ENDPOINT`` (read when a client is made, not at import,
so a test or a script may set it late), ``HF_TOKEN``, ``HF_HOME`` (download cache) and
``HF_HUB_OFFLINE``. Transient failures (5xx, 429, timeouts, dropped connections) are retried with
exponential backoff and then raised as :class:`HubError` with a short reason; permanent ones (404,
gated, unauthorized) are raised at once. Nothing here ever asks for remote code.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, TypeVar

from huggingface_hub import HfApi, hf_hub_download, hf_hub_url
from huggingface_hub import errors as hf_errors
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status, validate_repo_id

from hubselect.constants import (ENV_HUB_BACKOFF, ENV_HUB_RETRIES, ENV_HUB_TIMEOUT, env_number, hf_endpoint,
                                 hf_offline, hf_token)
from hubselect.errors import HubError, HubUnauthorized, UserError, first_line, hub_error

log = logging.getLogger(__name__)
T = TypeVar("T")

TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}


def is_repo_id(text: object, owner: bool = True) -> bool:
    """A Hub repo ID as huggingface_hub validates it (no path, no URL, no ``--`` or ``..``); ``owner/name``
    unless ``owner=False`` (canonical names such as ``mnist`` have no owner)."""
    if not isinstance(text, str):
        return False
    try:
        validate_repo_id(text)
    except HFValidationError:
        return False
    return "/" in text or not owner


def check_repo_id(value: object, what: str, owner: bool = True) -> str:
    """``value`` when it is a valid repo ID, else a :class:`UserError` naming ``what`` it should be."""
    if not is_repo_id(value, owner=owner):
        shape = "owner/name" if owner else "name or owner/name"
        raise UserError(f"{what} must be a Hub repo ID ({shape}), not {value!r}")
    return value


def _status_of(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _classify(exc: BaseException) -> tuple[str, bool]:
    """Map a client exception to (reason, transient)."""
    # hf_hub_download wraps network failures in LocalEntryNotFoundError; look at the cause.
    seen = exc
    while isinstance(seen, hf_errors.LocalEntryNotFoundError) and seen.__cause__ is not None:
        seen = seen.__cause__
    if isinstance(seen, hf_errors.GatedRepoError):
        return "gated", False
    if isinstance(seen, hf_errors.RepositoryNotFoundError):
        status = _status_of(seen)
        return ("unauthorized" if status in (401, 403) else "not_found"), False
    if isinstance(seen, (hf_errors.RevisionNotFoundError, hf_errors.EntryNotFoundError)):
        return "not_found", False
    if isinstance(seen, hf_errors.OfflineModeIsEnabled) or (
            isinstance(exc, hf_errors.LocalEntryNotFoundError) and seen is exc):
        return "offline", False
    if isinstance(seen, hf_errors.HfHubHTTPError):
        status = _status_of(seen)
        if status in (401, 403):
            return "unauthorized", False
        if status == 404:
            return "not_found", False
        if status == 429:
            return "rate_limited", True
        if status in TRANSIENT_STATUS:
            return "server_error", True
        return f"http_{status}", False
    if isinstance(seen, TimeoutError) or "Timeout" in type(seen).__name__:
        return "timeout", True
    if isinstance(seen, (ConnectionError, OSError)) or "Connect" in type(seen).__name__ \
            or "Transport" in type(seen).__name__ or "Protocol" in type(seen).__name__:
        return "connection", True
    if isinstance(seen, json.JSONDecodeError):
        return "malformed_json", False
    return type(seen).__name__, False


@dataclass
class RepoMeta:
    """What the Hub says about a repo, without reading any file."""

    repo_id: str
    sha: str | None
    files: list[str]
    downloads: int | None = None
    likes: int | None = None
    last_modified: str | None = None
    tags: list[str] = field(default_factory=list)
    pipeline_tag: str | None = None
    library_name: str | None = None
    gated: Any = None


class HubClient:
    """A thin, retrying wrapper around ``HfApi`` for the calls hubselect needs."""

    def __init__(self, endpoint: str | None = None, token: str | None = None,
                 retries: int | None = None, backoff: float | None = None, timeout: float | None = None):
        self.endpoint = endpoint or hf_endpoint()
        self.token = token if token is not None else hf_token()
        self.retries = retries if retries is not None else env_number(ENV_HUB_RETRIES, 4, int)
        self.backoff = backoff if backoff is not None else env_number(ENV_HUB_BACKOFF, 1.0)
        self.timeout = timeout if timeout is not None else env_number(ENV_HUB_TIMEOUT, 30.0)
        self.api = HfApi(endpoint=self.endpoint, token=self.token)

    def _call(self, what: str, fn: Callable[[], T], retries: int | None = None) -> T:
        """Run ``fn``, retrying transient failures with exponential backoff (``retries=0``: never)."""
        retries = self.retries if retries is None else retries
        delay = self.backoff
        for attempt in range(retries + 1):
            try:
                return fn()
            except Exception as exc:  # classified below; anything unknown is re-raised as HubError
                reason, transient = _classify(exc)
                if not transient or attempt == retries:
                    raise hub_error(reason, f"{what}: {reason} ({first_line(exc, 200)})") from exc
                log.warning("%s: %s, retrying in %.1fs (%d/%d)", what, reason, delay, attempt + 1, retries)
                time.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    # -- reads ---------------------------------------------------------------------------------
    def list_text_to_image(self, limit: int | None = None) -> list[str]:
        """Diffusers text-to-image model repos, most downloaded first."""
        def run():
            return [m.id for m in self.api.list_models(pipeline_tag="text-to-image", filter="diffusers",
                                                       sort="downloads", limit=limit)]
        return self._call("list text-to-image models", run)

    def repo_meta(self, repo_id: str) -> RepoMeta:
        def run():
            if hf_offline():
                raise hf_errors.OfflineModeIsEnabled("HF_HUB_OFFLINE is set")
            info = self.api.model_info(repo_id, timeout=self.timeout)
            modified = info.last_modified
            return RepoMeta(
                repo_id=info.id, sha=info.sha,
                files=sorted(s.rfilename for s in (info.siblings or [])),
                downloads=info.downloads, likes=info.likes,
                last_modified=modified.isoformat() if isinstance(modified, datetime) else modified,
                tags=list(info.tags or []), pipeline_tag=info.pipeline_tag,
                library_name=info.library_name, gated=info.gated)
        return self._call(f"{repo_id}: repo info", run)

    def download(self, repo_id: str, filename: str, revision: str | None = None,
                 repo_type: str = "model") -> str:
        """Local path of one file, through the Hub cache under ``HF_HOME``."""
        return self._call(f"{repo_id}/{filename}", lambda: hf_hub_download(
            repo_id, filename, revision=revision, repo_type=repo_type,
            endpoint=self.endpoint, token=self.token))

    def dataset_meta(self, repo_id: str):
        """The Hub's info on a dataset repo (sha, gated, card data), as huggingface_hub parses it."""
        def run():
            if hf_offline():
                raise hf_errors.OfflineModeIsEnabled("HF_HUB_OFFLINE is set")
            return self.api.dataset_info(repo_id, timeout=self.timeout)
        return self._call(f"{repo_id}: dataset info", run)

    def fetch_bytes(self, repo_id: str, filename: str, revision: str | None = None,
                    repo_type: str = "model") -> bytes:
        """One small file (a config, a card), in memory.

        Uses the client's own session, URL scheme, headers and typed errors, but our retry policy:
        ``hf_hub_download`` retries server errors internally for about 20 s per file, which is
        right for a weight file and too slow for a crawl of hundreds of small configs.
        """
        def run():
            if hf_offline():
                raise hf_errors.OfflineModeIsEnabled("HF_HUB_OFFLINE is set")
            url = hf_hub_url(repo_id, filename, revision=revision, repo_type=repo_type, endpoint=self.endpoint)
            response = get_session().get(url, headers=build_hf_headers(token=self.token),
                                         timeout=self.timeout, follow_redirects=True)
            hf_raise_for_status(response)
            return response.content
        return self._call(f"{repo_id}/{filename}", run)

    def read_json(self, repo_id: str, filename: str, revision: str | None = None) -> dict:
        """A JSON file of a repo, parsed; one that does not parse is reported as malformed_json."""
        data = self.fetch_bytes(repo_id, filename, revision=revision)
        try:
            return json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HubError("malformed_json", f"{repo_id}/{filename}: malformed_json ({exc})") from None

    def read_text(self, repo_id: str, filename: str, revision: str | None = None) -> str:
        return self.fetch_bytes(repo_id, filename, revision=revision).decode("utf-8", errors="replace")


    def whoami(self) -> dict:
        """The token's user: ``{"name": ..., "role": "read" | "write" | ...}``; ``unauthorized`` without a token."""
        if not self.token:
            raise HubUnauthorized("unauthorized", "no token: set HF_TOKEN or run `hf auth login`")

        def run():
            info = self.api.whoami(token=self.token)
            token_info = (info.get("auth") or {}).get("accessToken") or {}
            return {"name": info.get("name"), "role": token_info.get("role"),
                    "orgs": [o.get("name") for o in info.get("orgs") or []]}
        return self._call("whoami", run)

    # -- writes (the shared edge dataset, adapters) ------------------------------------------------
    def create_repo(self, repo_id: str, repo_type: str = "dataset", exist_ok: bool = True,
                    private: bool = False) -> None:
        """Create a repo (nothing happens when it exists and ``exist_ok``); needs a write token."""
        self._call(f"{repo_id}: create repo", lambda: self.api.create_repo(
            repo_id, repo_type=repo_type, exist_ok=exist_ok, private=private))

    def list_repo_files(self, repo_id: str, repo_type: str = "dataset", revision: str | None = None) -> list[str]:
        """Every file path of a repo at ``revision`` (default: the head of main)."""
        def run():
            if hf_offline():
                raise hf_errors.OfflineModeIsEnabled("HF_HUB_OFFLINE is set")
            return sorted(self.api.list_repo_files(repo_id, repo_type=repo_type, revision=revision))
        return self._call(f"{repo_id}: list files", run)

    # -- provenance (the shared edge dataset's sync) -----------------------------------------------
    def list_tree(self, repo_id: str, repo_type: str = "dataset",
                  revision: str | None = None) -> list[tuple[str, str, int]]:
        """``(path, git blob id, size)`` of every file of a repo at ``revision``, without reading any."""
        def run():
            if hf_offline():
                raise hf_errors.OfflineModeIsEnabled("HF_HUB_OFFLINE is set")
            return sorted((f.path, f.blob_id, int(f.size)) for f in self.api.list_repo_tree(
                repo_id, repo_type=repo_type, revision=revision, recursive=True) if hasattr(f, "blob_id"))
        return self._call(f"{repo_id}: list tree", run)

    def last_commits(self, repo_id: str, paths: list[str], repo_type: str = "dataset",
                     revision: str | None = None, batch: int = 50) -> dict[str, str]:
        """``{path: id of the last commit that changed it}`` at ``revision`` (``get_paths_info(expand=True)``,
        ``batch`` paths per request)."""
        out: dict[str, str] = {}
        for i in range(0, len(paths), batch):
            chunk = paths[i:i + batch]

            def run(chunk=chunk):
                infos = self.api.get_paths_info(repo_id, chunk, repo_type=repo_type, revision=revision, expand=True)
                return {f.path: f.last_commit.oid for f in infos
                        if hasattr(f, "blob_id") and getattr(f, "last_commit", None) is not None}
            out.update(self._call(f"{repo_id}: last commits", run))
        return out

    def commit_authors(self, repo_id: str, commit_ids: set[str], repo_type: str = "dataset",
                       revision: str | None = None) -> dict[str, list[str]]:
        """``{commit id: [author, ...]}`` for ``commit_ids``, as the Hub's commit history records them.

        Reads the history of ``revision`` (the same listing as ``HfApi.list_repo_commits``) newest
        first, page by page, and stops as soon as every wanted commit is found, so a sync that only
        needs the last few commits reads one page. Ids not in the history are left out.
        """
        from urllib.parse import quote

        from huggingface_hub.utils import paginate

        wanted = set(commit_ids)
        if not wanted:
            return {}

        def run():
            if hf_offline():
                raise hf_errors.OfflineModeIsEnabled("HF_HUB_OFFLINE is set")
            url = f"{self.endpoint}/api/{repo_type}s/{repo_id}/commits/{quote(revision or 'main', safe='')}"
            found: dict[str, list[str]] = {}
            for item in paginate(url, params={}, headers=build_hf_headers(token=self.token)):
                cid = item.get("id") if isinstance(item, dict) else None
                if cid in wanted:
                    found[cid] = [a.get("user") for a in item.get("authors") or []
                                  if isinstance(a, dict) and isinstance(a.get("user"), str)]
                    if len(found) == len(wanted):
                        break
            return found
        return self._call(f"{repo_id}: commit history", run)

    def upload_files(self, repo_id: str, files: dict[str, bytes], repo_type: str = "dataset",
                     message: str = "Upload files", parent_commit: str | None = None) -> str:
        """Add ``files`` ({path in repo: content}) in ONE commit; returns the new commit id.

        With ``parent_commit``, the Hub refuses the commit (HTTP 412, reason ``http_412``) when the
        branch has moved on since, so that a caller can re-read the repo and try again.
        """
        from huggingface_hub import CommitOperationAdd

        def run():
            ops = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=data) for path, data in files.items()]
            info = self.api.create_commit(repo_id, operations=ops, commit_message=message, repo_type=repo_type,
                                          parent_commit=parent_commit)
            return info.oid
        return self._call(f"{repo_id}: commit", run)

    def download_pipeline(self, repo_id: str, local_dir: str | os.PathLike, variant: str | None = None,
                          only: set[str] | None = None, skip: set[str] = frozenset()) -> list[str]:
        """Download what a diffusers pipeline needs to run, and nothing else.

        Configs, tokenizer files and one precision variant of safetensors weights per component;
        never pickle checkpoints (.bin, .ckpt, .pt), never code (.py), never root-level
        single-file checkpoints. ``only`` keeps just those component folders (no root files),
        ``skip`` leaves those folders out. Returns the files fetched (relative paths).
        """
        meta = self.repo_meta(repo_id)
        files = [f for f in pipeline_files(meta.files, variant=variant)
                 if (only is None or f.split("/")[0] in only and "/" in f) and f.split("/")[0] not in skip]
        if not any(f.endswith(".safetensors") for f in files):
            raise HubError("no_safetensors", f"{repo_id}: no safetensors weights in the repo "
                                              "(pickle checkpoints are never loaded)")
        from huggingface_hub import snapshot_download
        self._call(f"{repo_id}: download", lambda: snapshot_download(
            repo_id, revision=meta.sha, allow_patterns=files, local_dir=str(local_dir),
            endpoint=self.endpoint, token=self.token))
        return files

    # -- Hugging Face Jobs (``hubselect sweep --backend hf-jobs``) ----------------------------------------
    def run_job(self, *, image: str, command: list[str], flavor: str, namespace: str,
                timeout: str | int | None = None, env: dict | None = None, secrets: dict | None = None,
                labels: dict | None = None, name: str | None = None):
        """Submit one Job (``POST /api/jobs/<namespace>``); returns huggingface_hub's ``JobInfo``.

        Never retried: a POST that failed in flight may still have started the Job. Secrets travel
        in the Job's encrypted ``secrets`` map, never in its command or environment.
        """
        return self._call(f"{namespace}: run job", lambda: self.api.run_job(
            image=image, command=command, env=env, secrets=secrets, flavor=flavor, timeout=timeout, labels=labels,
            name=name, namespace=namespace), retries=0)

    def inspect_job(self, job_id: str, namespace: str):
        """A Job's current ``JobInfo`` (stage in ``.status.stage``)."""
        return self._call(f"job {job_id}", lambda: self.api.inspect_job(job_id=job_id, namespace=namespace))

    def list_jobs(self, namespace: str, stages: list[str] | None = None, labels: dict | None = None) -> list:
        """The namespace's Jobs (``JobInfo``), filtered by stage and labels."""
        return self._call(f"{namespace}: list jobs", lambda: list(self.api.list_jobs(
            namespace=namespace, status=stages, labels=labels, timeout=self.timeout)))

    def job_logs(self, job_id: str, namespace: str, tail: int | None = None) -> list[str]:
        """The Job's log lines so far (the last ``tail`` of them), without following."""
        return self._call(f"job {job_id}: logs", lambda: list(self.api.fetch_job_logs(
            job_id=job_id, namespace=namespace, tail=tail, follow=False)))

    def cancel_job(self, job_id: str, namespace: str) -> None:
        self._call(f"job {job_id}: cancel", lambda: self.api.cancel_job(job_id=job_id, namespace=namespace))


SUPPORT_SUFFIXES = (".json", ".txt", ".model", ".tiktoken")
UNSAFE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl", ".pickle", ".py", ".onnx", ".msgpack", ".h5")


def pipeline_files(files: list[str], variant: str | None = None) -> list[str]:
    """The subset of a repo's files that ``DiffusionPipeline.from_pretrained`` needs (safetensors)."""
    keep = [f for f in files if f in ("model_index.json", "README.md")]
    by_folder: dict[str, list[str]] = {}
    for f in files:
        parts = f.split("/")
        if len(parts) < 2 or f.endswith(UNSAFE_SUFFIXES):
            continue   # root-level files other than the index are single-file checkpoints or extras
        if f.endswith(".safetensors"):
            by_folder.setdefault(parts[0], []).append(f)
        elif f.endswith(SUPPORT_SUFFIXES):
            keep.append(f)
    for weights in by_folder.values():
        variants = {_weight_variant(w) for w in weights}
        if variant in variants:
            chosen = variant
        else:   # the full-precision files when present, else the first variant by name
            chosen = None if None in variants else sorted(v for v in variants if v)[0]
        keep += [w for w in weights if _weight_variant(w) == chosen]
    return sorted(set(keep))


def _weight_variant(path: str) -> str | None:
    """``fp16`` for ``unet/diffusion_pytorch_model.fp16.safetensors`` (sharded too), else None."""
    stem = path.rsplit("/", 1)[-1][: -len(".safetensors")]
    head, _, tail = stem.rpartition(".")
    return tail.split("-")[0] if head else None


