"""The scheduled zoo refresh: crawl, sync, refit, evaluate as a guard, update the zoo, cache top pipelines.

:func:`refresh_zoo` is the whole refresh; ``hubselect refresh`` (:mod:`hubselect.cli.refresh`) runs it and
``.github/workflows/refresh-zoo.yml`` runs that command every week. Every step works on a STAGING COPY of the
zoo (a temporary directory):

  a. crawl: the Hub's most-downloaded diffusers text-to-image repos (``limit``) plus crawlers/pinned.txt,
     incremental by commit sha (``hubselect.crawlers.crawl.crawl``);
  b. sync: pull the shared edge dataset's records and profiles (``hubselect.share.sync.pull``); an edge dataset
     that does not exist (or is private without a token) is a warning, not a failure;
  c. refit: the model-feature schema is refitted on the whole zoo (the ``hubselect crawl --refit-features``
     code path). The predictor is trained at rank time from the zoo's tables, so there is no model file to
     retrain: "retraining" is the refit plus the evaluation below, which trains it once per fold;
  d. guard: leave-one-dataset-out evaluation of M&C (method ``mc``, as ``hubselect evaluate``) on the staging
     copy; its OSR and weighted τ are compared with the figures committed in the zoo's ``evaluation.json``.
     A figure below the committed one minus the tolerance stops the refresh with the zoo untouched (the
     result's ``guard.passed`` is false; the command exits 1). Without committed figures (first evaluation),
     or with nothing to evaluate (no two datasets with two scored models each: the cold start), there is
     nothing to compare and the guard passes. When it passes, the zoo's changed files are replaced one by
     one with the staging copy's, each atomically (temporary file + rename, as every zoo write), and
     ``evaluation.json`` last;
  e. for each configured dataset: ``hubselect rank DATASET`` on the refreshed zoo, and with a download folder
     the top pipeline is downloaded as ``hubselect rank --download`` does
     (:func:`hubselect.rank.loadable.download_top`) into ``DIR/<owner>--<name>``, with ``DIR/manifest.json``;
     ``cache_key`` is derived from the ranked models and their commit shas. A failed ranking or download is
     reported in its entry: the zoo refresh itself has succeeded by then.

Configuration (JSON; every key optional)::

    {"datasets": ["owner/dataset", ...], "limit": 50, "pinned": true, "edges_repo": null,
     "variant": "fp16", "seed": 0, "tolerance": {"osr": 0.01, "weighted_tau": 0.01}}

Bad configuration, a bad zoo or a Hub failure that stops the refresh is a UserError. The token is read from
``HF_TOKEN`` by the Hub client and never printed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hubselect.errors import UserError
from hubselect.hub import check_repo_id, is_repo_id

EVALUATION_FILE = "evaluation.json"
GUARD_METHOD = "mc"                           # leave_one_dataset_out's default method: M&C as `hubselect rank`
GUARD_FIGURES = ("osr", "weighted_tau")       # column names of hubselect.evaluate.metrics.summarize
FIGURE_LABELS = {"osr": "OSR", "weighted_tau": "weighted τ"}
DEFAULT_TOLERANCE = {"osr": 0.01, "weighted_tau": 0.01}
CONFIG_KEYS = ("datasets", "limit", "pinned", "edges_repo", "variant", "seed", "tolerance")


# -- configuration ----------------------------------------------------------------------------------

@dataclass
class RefreshConfig:
    """What to refresh: the datasets to rank, the crawl's size, the edge dataset, the guard's tolerance."""

    datasets: list[str] = field(default_factory=list)
    limit: int = 50
    pinned: bool = True
    edges_repo: str | None = None
    variant: str | None = None
    seed: int = 0
    tolerance: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TOLERANCE))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load_config(path: str | Path | None) -> RefreshConfig:
    """The configuration in ``path`` (JSON), validated; defaults without a file. Raises UserError."""
    cfg = RefreshConfig()
    if path is None:
        return cfg
    where = f"config {path}"
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{where}: unreadable ({exc})") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(CONFIG_KEYS))
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(CONFIG_KEYS)})")
    if "datasets" in raw:
        ds = raw["datasets"]
        if not isinstance(ds, list) or not all(isinstance(d, str) and d.strip() for d in ds):
            raise UserError(f"{where}: datasets must be a list of dataset IDs (strings)")
        bad = [d for d in ds if not (is_repo_id(d) or Path(d).is_dir())]
        if bad:
            raise UserError(f"{where}: {bad[0]!r} is neither a Hub dataset ID (owner/name) nor a local folder")
        dup = sorted({d for d in ds if ds.count(d) > 1})
        if dup:
            raise UserError(f"{where}: dataset {dup[0]!r} is listed twice")
        cfg.datasets = list(ds)
    if "limit" in raw:
        if not _is_int(raw["limit"]) or raw["limit"] < 1:
            raise UserError(f"{where}: limit must be a positive integer, got {raw['limit']!r}")
        cfg.limit = raw["limit"]
    if "pinned" in raw:
        if not isinstance(raw["pinned"], bool):
            raise UserError(f"{where}: pinned must be true or false, got {raw['pinned']!r}")
        cfg.pinned = raw["pinned"]
    if raw.get("edges_repo") is not None:
        cfg.edges_repo = check_repo_id(raw["edges_repo"], f"{where}: edges_repo")
    if raw.get("variant") is not None:
        if not isinstance(raw["variant"], str) or not raw["variant"].isidentifier():
            raise UserError(f"{where}: variant must be a weight variant name such as fp16, got {raw['variant']!r}")
        cfg.variant = raw["variant"]
    if "seed" in raw:
        if not _is_int(raw["seed"]) or raw["seed"] < 0:
            raise UserError(f"{where}: seed must be a non-negative integer, got {raw['seed']!r}")
        cfg.seed = raw["seed"]
    if "tolerance" in raw:
        tol = raw["tolerance"]
        if not isinstance(tol, dict) or set(tol) - set(GUARD_FIGURES):
            raise UserError(f"{where}: tolerance must be an object with keys {' and '.join(GUARD_FIGURES)}")
        for k, v in tol.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise UserError(f"{where}: tolerance {k} must be a number between 0 and 1, got {v!r}")
            cfg.tolerance[k] = float(v)
    return cfg


# -- the guard --------------------------------------------------------------------------------------

def evaluate_zoo(zoo_dir: Path, seed: int = 0) -> dict | None:
    """M&C's leave-one-dataset-out figures on the zoo (as ``hubselect evaluate``), or None with nothing to evaluate.

    Only the method the guard watches is run (``mc``, the defaults of ``hubselect rank``); the baselines and
    the paper preset are left to ``hubselect evaluate``.
    """
    import pandas as pd

    from hubselect.evaluate import metrics
    from hubselect.evaluate.protocol import eligible_datasets, leave_one_dataset_out
    from hubselect.zoo.format import Zoo
    from hubselect.zoo.tables import ZooTables

    tables = ZooTables.load(Zoo.open(zoo_dir))
    if len(eligible_datasets(tables.records)) < 2:
        return None
    per = leave_one_dataset_out(tables, baselines=False, seed=seed)
    row = metrics.summarize(per).set_index("method").loc[GUARD_METHOD]
    figures = {k: None if pd.isna(row[k]) else float(row[k]) for k in GUARD_FIGURES}
    return {"format": 1, "method": GUARD_METHOD, "metric": tables.metric, "higher_is_better": tables.higher_is_better,
            **figures, "n_datasets": int(row["n_datasets"]), "n_models": int(len(tables.models)),
            "n_records": int(len(tables.records)), "seed": seed}


def read_committed(zoo_dir: Path) -> dict | None:
    """The figures of the zoo's ``evaluation.json``, or None when the zoo has none. Raises UserError."""
    path = zoo_dir / EVALUATION_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"unreadable {path}: {exc}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a JSON object")
    for k in GUARD_FIGURES:
        v = data.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise UserError(f"{path}: {k} must be a number or null, got {v!r}")
    return data


def guard(committed: dict | None, current: dict | None, tolerance: dict[str, float]) -> dict:
    """Compare the staging copy's figures with the committed ones: ``{"passed", "status", "reason", ...}``.

    A figure fails when ``current < committed - tolerance``; a figure that can no longer be computed while a
    committed one exists fails too.
    """
    out = {"committed": committed, "current": current, "tolerance": dict(tolerance)}
    if current is None and committed is None:
        return {**out, "passed": True, "status": "nothing to compare",
                "reason": "cold start: no two datasets with two scored models each, nothing to evaluate"}
    if current is None:
        return {**out, "passed": False, "status": "failed",
                "reason": "the refreshed zoo can no longer be evaluated (no two datasets with two scored models "
                          "each) while committed figures exist"}
    if committed is None or all(committed.get(k) is None for k in GUARD_FIGURES):
        return {**out, "passed": True, "status": "first figures",
                "reason": f"no committed figures yet: {_figures_text(current)} recorded"}
    for k in GUARD_FIGURES:
        before, now = committed.get(k), current.get(k)
        if before is None:
            continue
        if now is None:
            return {**out, "passed": False, "status": "failed",
                    "reason": f"{FIGURE_LABELS[k]} could not be computed (committed {before:.4f})"}
        if now < before - tolerance[k]:
            return {**out, "passed": False, "status": "failed",
                    "reason": f"{FIGURE_LABELS[k]} fell to {now:.4f} from the committed {before:.4f} "
                              f"(tolerance {tolerance[k]:g})"}
    return {**out, "passed": True, "status": "passed",
            "reason": f"{_figures_text(current)} against committed {_figures_text(committed)}"}


def _figures_text(fig: dict) -> str:
    def fmt(v):
        return "n/a" if v is None else f"{v:.4f}"
    return ", ".join(f"{FIGURE_LABELS[k]} {fmt(fig.get(k))}" for k in GUARD_FIGURES)


# -- staging and applying ---------------------------------------------------------------------------

def _zoo_files(root: Path) -> dict[str, Path]:
    """Every file of a zoo by relative path; leftovers of interrupted atomic writes (``.*.tmp``) excluded."""
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*"))
            if p.is_file() and not (p.name.startswith(".") and p.name.endswith(".tmp"))}


def diff_zoos(zoo_dir: Path, staging: Path) -> dict[str, list[str]]:
    """The files ``staging`` adds to, changes in and removes from ``zoo_dir`` (relative paths)."""
    old, new = _zoo_files(zoo_dir), _zoo_files(staging)
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    modified = sorted(p for p in set(old) & set(new) if old[p].read_bytes() != new[p].read_bytes())
    return {"added": added, "modified": modified, "removed": removed}


def apply_changes(zoo_dir: Path, staging: Path, changes: dict[str, list[str]]) -> None:
    """Replace the zoo's changed files with the staging copy's, each atomically; ``evaluation.json`` last.

    Only files that differ are written, so an unchanged file keeps its bytes and its mtime. Were the
    process killed half way, every file would be either its old or its new version, and the next refresh
    (which starts from the zoo as it is and rebuilds the derived tables) would complete the update.
    """
    from hubselect.zoo.format import atomic_write_bytes

    order = sorted(changes["added"] + changes["modified"], key=lambda p: (p == EVALUATION_FILE, p))
    for rel in order:
        atomic_write_bytes(zoo_dir / rel, (staging / rel).read_bytes())
    for rel in changes["removed"]:
        (zoo_dir / rel).unlink(missing_ok=True)


# -- steps ------------------------------------------------------------------------------------------

def crawl_step(stage, cfg: RefreshConfig, client) -> dict:
    """Crawl into the staging zoo; the models added, updated (new commit), unchanged and skipped."""
    from hubselect.crawlers.crawl import crawl, load_records

    known = {r["model"] for r in load_records(stage) if r.get("status") == "ok"}
    summary = crawl(None, stage, limit=cfg.limit, include_pinned=cfg.pinned, refit_features=True, client=client)
    return {"added": sorted(m for m in summary.crawled if m not in known),
            "updated": sorted(m for m in summary.crawled if m in known),
            "unchanged": sorted(summary.unchanged), "skipped": dict(sorted(summary.skipped.items()))}


def sync_step(stage, cfg: RefreshConfig, client) -> dict:
    """Pull the edge dataset into the staging zoo; a missing edge dataset is a warning in the result."""
    from hubselect.errors import HubError, HubNotFound, HubUnauthorized, hub_user_error
    from hubselect.share.records import edges_repo
    from hubselect.share.sync import pull

    repo = edges_repo(cfg.edges_repo)
    try:
        client.dataset_meta(repo)
    except HubError as exc:
        if isinstance(exc, (HubNotFound, HubUnauthorized)):   # a missing repo is a 401 when no token is sent
            return {"repo": repo, "records_added": 0, "profiles_added": 0, "skipped": 0, "records_total": None,
                    "warning": f"{hub_user_error(exc, f'edge dataset {repo}')}: no records pulled"}
        # any other failure is reported by pull() below, in its own words
    pulled = pull(repo, stage, client=client)
    pulled.pop("zoo", None)     # the staging copy's path: meaningless once the copy is gone
    return pulled


def rank_and_download(datasets: list[str], zoo_dir: Path, download_dir: Path | None, cfg: RefreshConfig,
                      client) -> tuple[list[dict], str | None]:
    """Rank each dataset on the zoo and download its top pipeline; returns (one entry per dataset, cache key)."""
    from hubselect.errors import HubError
    from hubselect.rank.api import rank
    from hubselect.rank.loadable import download_top, top_hub_model

    results, pipelines = [], {}
    for ds in datasets:
        entry: dict = {"dataset": ds}
        try:
            ranking = rank(ds, zoo=zoo_dir, seed=cfg.seed)
            top = top_hub_model(ranking)
            entry.update(model=top.model, source=top.source, cold_start=ranking.cold_start)
            if download_dir is not None:
                if top.model not in pipelines:    # two datasets with the same top pipeline: one download
                    sha = client.repo_meta(top.model).sha
                    folder = top.model.replace("/", "--")
                    got = download_top(ranking, download_dir / folder, variant=cfg.variant, client=client)
                    pipelines[top.model] = {"sha": sha, "folder": folder, "files": got["files"], "datasets": []}
                pipelines[top.model]["datasets"].append(ds)
                info = pipelines[top.model]
                entry.update(sha=info["sha"], path=str(download_dir / info["folder"]), files=len(info["files"]))
        except (UserError, HubError) as exc:
            entry["error"] = str(exc)
        except Exception as exc:   # the zoo is refreshed by now: report the failure, do not lose the refresh
            entry["error"] = f"{type(exc).__name__}: {exc}"
        results.append(entry)
    if download_dir is None or not pipelines:
        return results, None
    _write_manifest(download_dir, pipelines)
    key_text = "\n".join(f"{m}@{p['sha']}:{cfg.variant or ''}" for m, p in sorted(pipelines.items()))
    return results, "hubselect-pipelines-" + hashlib.sha256(key_text.encode()).hexdigest()[:20]


def _write_manifest(download_dir: Path, pipelines: dict) -> None:
    """``manifest.json`` of the download folder; pipelines an earlier manifest listed and this one does not go."""
    from hubselect.zoo.format import atomic_write_json

    manifest = download_dir / "manifest.json"
    try:
        earlier = json.loads(manifest.read_text()).get("pipelines", {}) if manifest.is_file() else {}
    except (OSError, json.JSONDecodeError, AttributeError):
        earlier = {}
    keep = {info["folder"] for info in pipelines.values()}
    for info in earlier.values() if isinstance(earlier, dict) else ():
        folder = info.get("folder") if isinstance(info, dict) else None
        # only folders the refresh made: a plain name inside the download folder
        if isinstance(folder, str) and folder not in keep and "/" not in folder and folder not in ("", ".", ".."):
            shutil.rmtree(download_dir / folder, ignore_errors=True)
    atomic_write_json(manifest, {"pipelines": pipelines})


# -- the refresh ------------------------------------------------------------------------------------

def refresh_zoo(zoo: str | Path | None = None, config: RefreshConfig | None = None,
                download_dir: str | Path | None = None, dry_run: bool = False,
                log: Callable[[str], None] | None = None, client=None) -> dict:
    """Run steps a–e on ``zoo`` (default: the user's zoo, never the shipped one); returns the summary.

    The summary holds ``models`` (added, updated, unchanged, skipped), ``sync``, ``guard`` (``passed``,
    ``status``, ``reason``, the figures), ``changed_files``, ``zoo_updated``, ``downloads`` (one entry per
    configured dataset) and ``cache_key``. When the guard fails the zoo is left untouched, nothing is ranked
    and ``guard.passed`` is false. ``log`` receives one line per step. Raises UserError (bad zoo, Hub failure).
    """
    from hubselect.hub import HubClient
    from hubselect.zoo.format import Zoo, atomic_write_json

    cfg = config or RefreshConfig()
    log = log or (lambda message: None)
    target = Zoo.open(zoo, write=True)
    committed = read_committed(target.path)
    client = client or HubClient()
    download_dir = Path(download_dir) if download_dir is not None else None
    summary: dict = {"zoo": str(target.path), "dry_run": dry_run, "config": cfg.to_dict()}
    with tempfile.TemporaryDirectory(prefix="hubselect-refresh-") as tmp:
        staging = Path(tmp) / "zoo"
        shutil.copytree(target.path, staging)
        stage = Zoo(staging)

        log(f"crawl: the Hub's {cfg.limit} most-downloaded text-to-image diffusers repos"
            + (" and the pinned list" if cfg.pinned else ""))
        summary["models"] = crawl_step(stage, cfg, client)
        log("sync: the shared edge dataset")
        summary["sync"] = sync_step(stage, cfg, client)
        log(f"guard: leave-one-dataset-out evaluation of {GUARD_METHOD}")
        current = evaluate_zoo(staging, seed=cfg.seed)
        verdict = guard(committed, current, cfg.tolerance)
        summary["guard"] = verdict
        if not verdict["passed"]:
            summary.update(zoo_updated=False, changed_files=[], downloads=[], cache_key=None)
            return summary
        if current is not None:
            atomic_write_json(staging / EVALUATION_FILE, current)

        changes = diff_zoos(target.path, staging)
        changed = changes["added"] + changes["modified"] + changes["removed"]
        summary["changed_files"] = sorted(changed)
        if changed and not dry_run:
            apply_changes(target.path, staging, changes)
        summary["zoo_updated"] = bool(changed) and not dry_run

        if cfg.datasets:
            log(f"rank{' and download' if download_dir else ''}: {len(cfg.datasets)} dataset(s)")
        ranked_zoo = staging if dry_run else target.path
        if download_dir is not None:
            download_dir.mkdir(parents=True, exist_ok=True)
        summary["downloads"], summary["cache_key"] = rank_and_download(cfg.datasets, ranked_zoo, download_dir,
                                                                       cfg, client)
    return summary
