"""Crawl text-to-image pipelines (Hub repos or local folders) into a zoo.

Only JSON configs (model_index.json, ``<component>/config.json``,
``<component>/scheduler_config.json``) and the model card are read: never weights, never code.
Each repo's result is one JSON file under ``<zoo>/crawl/``; the zoo's tables are rebuilt from those
files at the end. A repo whose commit sha is unchanged since its last successful crawl is not
fetched again. A repo that fails (malformed JSON, no denoiser config, gated, missing, server
errors after retries) is recorded as skipped with its reason and the crawl goes on; a repo that
was crawled successfully before keeps its last good record.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

from hubselect.zoo import features
from hubselect.crawlers.card import card_facts, is_gated, licence_id
from hubselect.crawlers.pipeline import MissingDenoiser, describe_pipeline
from hubselect.errors import HubError, UserError
from hubselect.hub import HubClient, is_repo_id
from hubselect.rank.loadable import loadable_counterpart
from hubselect.zoo.format import Zoo, atomic_write_json

log = logging.getLogger(__name__)

# Bump when the crawler computes something new, so that unchanged repos are described again.
# 2: licence name/link, gated flag and base model from the card; the pipeline class a repo really
#    is and its loadable counterpart (hubselect.rank.loadable).
CRAWLER_VERSION = 2
CONFIG_FILE = re.compile(r"^[^/]+/(config|scheduler_config)\.json$")
PINNED_FILE = Path(__file__).with_name("pinned.txt")


class RepoFailure(Exception):
    """A repo that cannot be crawled this time; ``reason`` is recorded."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# -- sources ----------------------------------------------------------------------------------------

class HubRepo:
    """A model repo on the Hub (or on whatever HF_ENDPOINT names)."""

    source = "hub"

    def __init__(self, repo_id: str, client: HubClient):
        self.model = repo_id
        self.client = client
        self._meta = None

    def load_meta(self) -> None:
        try:
            self._meta = self.client.repo_meta(self.model)
        except HubError as exc:
            raise RepoFailure(f"{exc.reason}: {exc}") from None

    @property
    def sha(self) -> str | None:
        return self._meta.sha

    @property
    def files(self) -> list[str]:
        return self._meta.files

    @property
    def hub_stats(self) -> dict:
        m = self._meta
        return {"downloads": m.downloads, "likes": m.likes, "last_modified": m.last_modified,
                "tags": m.tags, "pipeline_tag": m.pipeline_tag, "library_name": m.library_name,
                "gated": m.gated}

    def read_bytes_json(self, path: str) -> dict:
        try:
            return self.client.read_json(self.model, path, revision=self.sha)
        except HubError as exc:
            raise RepoFailure(f"{exc.reason}: {path}") from None

    def read_text(self, path: str) -> str:
        try:
            return self.client.read_text(self.model, path, revision=self.sha)
        except HubError as exc:
            raise RepoFailure(f"{exc.reason}: {path}") from None


class LocalRepo:
    """A folder laid out as ``save_pretrained`` writes it (configs alone suffice)."""

    source = "local"

    def __init__(self, folder: Path):
        self.folder = folder.resolve()
        self.model = self.folder.name
        self.files: list[str] = []
        self.sha: str | None = None

    def load_meta(self) -> None:
        relative = (p.relative_to(self.folder) for p in self.folder.rglob("*") if p.is_file())
        self.files = sorted(r.as_posix() for r in relative if not any(part.startswith(".") for part in r.parts))
        # A content hash of the files we read stands in for the Hub's commit sha.
        h = hashlib.sha1()
        for rel in self.files:
            if rel == "model_index.json" or rel == "README.md" or CONFIG_FILE.match(rel):
                h.update(rel.encode() + b"\0" + (self.folder / rel).read_bytes())
        self.sha = h.hexdigest()

    hub_stats: dict = {}

    def read_bytes_json(self, path: str) -> dict:
        try:
            return json.loads((self.folder / path).read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise RepoFailure(f"not_utf8: {path}") from None
        except json.JSONDecodeError:
            raise RepoFailure(f"malformed_json: {path}") from None

    def read_text(self, path: str) -> str:
        try:
            return (self.folder / path).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise RepoFailure(f"not_utf8: {path}") from None


# -- one repo ---------------------------------------------------------------------------------------

def parse_card(text: str) -> tuple[dict, str | None]:
    """The YAML metadata of a model card, and a note if it could not be parsed."""
    from huggingface_hub import RepoCard
    try:
        data = RepoCard(text, ignore_metadata_errors=True).data.to_dict()
    except Exception as exc:  # malformed YAML: keep crawling, note it
        return {}, f"model card YAML unreadable: {type(exc).__name__}"
    return data, None


def describe_repo(repo) -> dict:
    """Read one repo's configs and card and describe it. Raises RepoFailure."""
    files = set(repo.files)
    model_index = repo.read_bytes_json("model_index.json") if "model_index.json" in files else None
    if model_index is not None and not isinstance(model_index, dict):
        raise RepoFailure("malformed_json: model_index.json is not an object")
    configs: dict[str, dict] = {}
    for path in sorted(f for f in files if CONFIG_FILE.match(f)):
        folder = path.split("/")[0]
        if model_index is not None and folder not in model_index:
            continue   # a folder the pipeline does not use (e.g. an extra checkpoint)
        cfg = repo.read_bytes_json(path)
        if not isinstance(cfg, dict):
            raise RepoFailure(f"malformed_json: {path} is not an object")
        configs[folder] = cfg
    card, card_note = ({}, None)
    if "README.md" in files:
        card, card_note = parse_card(repo.read_text("README.md"))
    # A repo that is not itself a loadable pipeline is described as the pipeline it really is
    # (its sampling defaults, hence its FLOPs), with the counterpart that loads it.
    loadable = loadable_counterpart(repo.model) if repo.source == "hub" else None
    try:
        report = describe_pipeline(model_index, configs,
                                   pipeline_class=loadable.pipeline_class if loadable else None)
    except MissingDenoiser as exc:
        raise RepoFailure(f"missing_denoiser: {exc}") from None
    denoiser = report.denoiser
    if denoiser.status != "counted":
        # Without its denoiser a pipeline has no size and no FLOPs: nothing to rank it by.
        raise RepoFailure(f"denoiser_{denoiser.status}: {denoiser.reason}")
    flops = report.flops
    notes = report.notes + ([card_note] if card_note else [])
    if loadable:
        notes.append(f"not a loadable pipeline itself: a {loadable.pipeline_class}, loaded through {loadable.repo}"
                     + (f" with its own {', '.join(loadable.components)}" if loadable.components else ""))
    return {
        "model": repo.model,
        "source": repo.source,
        "status": "ok",
        "sha": repo.sha,
        "crawler_version": CRAWLER_VERSION,
        "crawled_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hub": repo.hub_stats,
        "card": card_facts(card, repo.model),
        "pipeline_class": report.pipeline_class,
        "pipeline_class_inferred": report.pipeline_class_inferred,
        "pipeline_class_declared": (model_index or {}).get("_class_name"),
        "loadable": loadable.to_dict() if loadable else None,
        "denoiser_class": denoiser.resolved_class or denoiser.class_name,
        "components": {name: c.summary() for name, c in report.components.items()},
        "configs": configs,
        "sampling": report.sampling,
        "params_denoiser": denoiser.params,
        "params_vae": report.params_of("vae"),
        "params_text_encoders": report.params_of("text_encoder"),
        "params_total": report.params_total,
        "flops": flops,
        "tflops_per_image": flops["per_image"] / 1e12 if flops.get("per_image") else None,
        "notes": notes,
    }


# -- the crawl --------------------------------------------------------------------------------------

@dataclass
class CrawlSummary:
    crawled: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        return (f"crawled {len(self.crawled)}, unchanged {len(self.unchanged)}, "
                f"skipped {len(self.skipped)}")

    def to_dict(self) -> dict:
        return {"crawled": self.crawled, "unchanged": self.unchanged, "skipped": self.skipped}


def record_path(zoo: Zoo, model: str) -> Path:
    return zoo.path / "crawl" / (model.replace("/", "--") + ".json")


def load_records(zoo: Zoo) -> list[dict]:
    folder = zoo.path / "crawl"
    out = []
    for p in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        out.append(_read_crawl_record(p))
    return out


def _read_crawl_record(path: Path) -> dict:
    """One crawl record, or one line naming it when it is damaged (a model would silently vanish)."""
    try:
        record = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"unreadable crawl record {path} ({exc}): delete it and crawl that repo again") from None
    if not isinstance(record, dict):
        raise UserError(f"crawl record {path} is not a JSON object: delete it and crawl that repo again")
    return record


def read_pinned(path: Path = PINNED_FILE) -> list[str]:
    if not path.is_file():
        return []
    return [line.split("#")[0].strip() for line in path.read_text().splitlines()
            if line.split("#")[0].strip()]


def check_targets(targets: Iterable[str]) -> None:
    """Each target is a local folder or a Hub repo ID; anything else is bad input (checked before any
    zoo is created or written)."""
    for target in targets:
        if not (Path(target).is_dir() or is_repo_id(target)):
            raise UserError(f"{target!r} is neither a local folder nor a Hub repo ID (owner/name)")


def resolve_sources(targets: Iterable[str], client_factory: Callable[[], HubClient]) -> list:
    """Local folders for paths that exist, Hub repos for valid repo IDs; anything else is bad input."""
    targets = list(targets)
    check_targets(targets)
    sources, client = [], None
    for target in targets:
        if Path(target).is_dir():
            sources.append(LocalRepo(Path(target)))
        else:
            client = client or client_factory()
            sources.append(HubRepo(target, client))
    return sources


def crawl(targets: list[str] | None, zoo: Zoo, limit: int | None = None, include_pinned: bool = True,
          refit_features: bool = False, client: HubClient | None = None, progress=None) -> CrawlSummary:
    """Crawl ``targets`` (or the Hub's most-downloaded T2I diffusers repos) into ``zoo``.

    ``progress`` is an optional callable ``(done, total, model)`` for a progress bar.
    """
    def client_factory():
        return client or HubClient()

    load_records(zoo)            # a damaged crawl record stops the crawl before anything is written
    if targets:
        sources = resolve_sources(targets, client_factory)
    else:
        hub = client_factory()
        try:
            listed = hub.list_text_to_image(limit=limit)
        except HubError as exc:
            raise UserError(f"cannot list text-to-image repos: {exc}") from None
        pinned = [r for r in read_pinned() if r not in listed] if include_pinned else []
        sources = [HubRepo(r, hub) for r in listed + pinned]

    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars
    disable_progress_bars()   # per-file bars for kilobyte configs are noise; we draw our own
    summary = CrawlSummary()
    try:
        for i, repo in enumerate(sources):
            if progress:
                progress(i, len(sources), repo.model)
            _crawl_one(repo, zoo, summary)
        if progress:
            progress(len(sources), len(sources), None)
    finally:
        enable_progress_bars()
    rebuild_tables(zoo, refit_features=refit_features)
    return summary


def _crawl_one(repo, zoo: Zoo, summary: CrawlSummary) -> None:
    path = record_path(zoo, repo.model)
    previous = _read_crawl_record(path) if path.is_file() else None
    try:
        repo.load_meta()
        if (previous and previous.get("status") == "ok" and previous.get("sha") == repo.sha
                and previous.get("crawler_version") == CRAWLER_VERSION):
            if repo.source == "hub" and previous.get("hub") != repo.hub_stats:
                previous["hub"] = repo.hub_stats   # downloads/likes move; no file is fetched
                atomic_write_json(path, previous)
            summary.unchanged.append(repo.model)
            return
        record = describe_repo(repo)
    except RepoFailure as exc:
        summary.skipped[repo.model] = exc.reason
        if not (previous and previous.get("status") == "ok"):
            atomic_write_json(path, {"model": repo.model, "source": repo.source, "status": "skipped",
                                     "reason": exc.reason,
                                     "crawled_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        return
    atomic_write_json(path, record)
    summary.crawled.append(repo.model)


# -- tables -----------------------------------------------------------------------------------------

INFO_COLUMNS = ["model", "source", "sha", "last_modified", "downloads", "likes", "license", "gated",
                "base_model", "pipeline_class", "loadable_repo", "loadable_components", "loadable_source",
                "denoiser_class", "params_denoiser", "params_vae",
                "params_text_encoders", "params_total", "tflops_per_image", "flops_complete",
                "resolution", "num_inference_steps", "cfg_factor", "not_counted"]


def info_row(rec: dict) -> dict:
    hub, card, sampling = rec.get("hub") or {}, rec.get("card") or {}, rec.get("sampling") or {}
    loadable = rec.get("loadable") or {}
    not_counted = sorted(name for name, c in rec["components"].items()
                         if c["status"] in ("unresolvable", "failed", "no_config")
                         and c["role"] in ("denoiser", "vae", "text_encoder"))
    return {
        "model": rec["model"], "source": rec["source"], "sha": rec["sha"],
        "last_modified": hub.get("last_modified"), "downloads": hub.get("downloads"),
        "likes": hub.get("likes"),
        "license": licence_id(card), "gated": is_gated(hub.get("gated"), card),
        "base_model": ";".join(card.get("base_model") or []) or None,
        "pipeline_class": rec["pipeline_class"], "loadable_repo": loadable.get("loadable_repo"),
        "loadable_components": ";".join(loadable.get("loadable_components") or []) or None,
        "loadable_source": loadable.get("loadable_source"), "denoiser_class": rec["denoiser_class"],
        "params_denoiser": rec["params_denoiser"], "params_vae": rec["params_vae"],
        "params_text_encoders": rec["params_text_encoders"], "params_total": rec["params_total"],
        "tflops_per_image": rec["tflops_per_image"], "flops_complete": rec["flops"].get("complete"),
        "resolution": sampling.get("resolution"), "num_inference_steps": sampling.get("num_inference_steps"),
        "cfg_factor": sampling.get("cfg_factor"), "not_counted": ";".join(not_counted) or None,
    }


def rebuild_tables(zoo: Zoo, refit_features: bool = False) -> None:
    """Derive ``model_info`` and the encoded ``models`` table from the crawl records."""
    records = [r for r in load_records(zoo) if r.get("status") == "ok"]
    if not records:
        return
    info = pd.DataFrame([info_row(r) for r in records], columns=INFO_COLUMNS)
    zoo.write_table("model_info", info)
    schema_path = zoo.path / features.SCHEMA_FILE
    encoder = None if refit_features else features.ModelFeatureEncoder.load(schema_path)
    if encoder is None:
        encoder = features.ModelFeatureEncoder().fit(records)
        encoder.save(schema_path)
    zoo.write_table("models", encoder.transform(records))
    if not zoo.has_table("records"):
        zoo.write_table("records", pd.DataFrame(columns=["model", "dataset", "score", "initial_score"]))
