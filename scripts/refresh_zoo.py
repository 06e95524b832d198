"""The scheduled zoo refresh: crawl, sync, refit, evaluate as a guard, update the zoo, cache top pipelines.

    python scripts/refresh_zoo.py [--zoo DIR] [--config FILE] [--limit N] [--no-pinned] [--edges-repo ID]
                                  [--download-dir DIR] [--dry-run] [--json] [--github-output FILE]

`.github/workflows/refresh-zoo.yml` runs exactly this; the tests run it against the local Hub endpoint.
Every step works on a STAGING COPY of the zoo (a temporary directory):

  a. crawl: the Hub's most-downloaded diffusers text-to-image repos (``limit``) plus crawlers/pinned.txt,
     incremental by commit sha (``hubselect.crawlers.crawl.crawl``);
  b. sync: pull the shared edge dataset's records and profiles (``hubselect.share.records.pull``); an edge dataset
     that does not exist (or is private without a token) is a warning, not a failure;
  c. refit: the model-feature schema is refitted on the whole zoo (the ``hubselect crawl --refit-features``
     code path). The predictor is trained at rank time from the zoo's tables, so there is no model file to
     retrain: "retraining" is the refit plus the evaluation below, which trains it once per fold;
  d. guard: leave-one-dataset-out evaluation of M&C (method ``mc``, as ``hubselect evaluate``) on the staging
     copy; its OSR and weighted τ are compared with the figures committed in the zoo's ``evaluation.json``.
     A figure below the committed one minus the tolerance stops the refresh (exit 1, one line on stderr)
     with the zoo untouched. Without committed figures (first evaluation), or with nothing to evaluate (no
     two datasets with two scored models each: the cold start), there is nothing to compare and the guard
     passes. When it passes, the zoo's changed files are replaced one by one with the staging copy's, each
     atomically (temporary file + rename, as every zoo write), and ``evaluation.json`` last;
  e. for each configured dataset: ``hubselect rank DATASET`` on the refreshed zoo, and with
     ``--download-dir`` the top pipeline is downloaded as ``hubselect rank --download`` does (safetensors and
     configs only) into ``DIR/<owner>--<name>``, with ``DIR/manifest.json``; ``cache_key`` (printed in the
     summary and written to ``--github-output``) is derived from the ranked models and their commit shas.
     A failed ranking or download is a warning: the zoo refresh itself has succeeded by then.

Configuration (JSON; every key optional)::

    {"datasets": ["owner/dataset", ...], "limit": 50, "pinned": true, "edges_repo": null,
     "variant": "fp16", "seed": 0, "tolerance": {"osr": 0.01, "weighted_tau": 0.01}}

Exit codes: 0 done (zoo updated or already current), 1 the guard refused the update, 2 bad input (options,
configuration, zoo) or a Hub failure that stops the refresh. The token is read from ``HF_TOKEN`` by the Hub
client and never printed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from hubselect.hub import is_repo_id

EVALUATION_FILE = "evaluation.json"
GUARD_METHOD = "mc"
GUARD_FIGURES = ("osr", "weighted_tau")       # column names of hubselect.evaluate.metrics.summarize
FIGURE_LABELS = {"osr": "OSR", "weighted_tau": "weighted τ"}
DEFAULT_TOLERANCE = {"osr": 0.01, "weighted_tau": 0.01}
CONFIG_KEYS = ("datasets", "limit", "pinned", "edges_repo", "variant", "seed", "tolerance")
PROG = "refresh_zoo"


class ConfigError(Exception):
    """A bad option or configuration file: one line, exit 2."""


class GuardFailure(Exception):
    """The evaluation got worse than the committed figures: one line, exit 1, zoo untouched."""

    def __init__(self, reason: str, summary: dict):
        super().__init__(reason)
        self.summary = summary


# -- configuration ----------------------------------------------------------------------------------

@dataclass
class RefreshConfig:
    datasets: list[str] = field(default_factory=list)
    limit: int = 50
    pinned: bool = True
    edges_repo: str | None = None
    variant: str | None = None
    seed: int = 0
    tolerance: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TOLERANCE))

    def to_dict(self) -> dict:
        return {"datasets": self.datasets, "limit": self.limit, "pinned": self.pinned,
                "edges_repo": self.edges_repo, "variant": self.variant, "seed": self.seed,
                "tolerance": self.tolerance}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load_config(path: Path | None) -> RefreshConfig:
    """The configuration in ``path`` (JSON), validated; defaults without a file. Raises ConfigError."""
    cfg = RefreshConfig()
    if path is None:
        return cfg
    where = f"config {path}"
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: unreadable ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(CONFIG_KEYS)})")
    if "datasets" in raw:
        ds = raw["datasets"]
        if not isinstance(ds, list) or not all(isinstance(d, str) and d.strip() for d in ds):
            raise ConfigError(f"{where}: datasets must be a list of dataset IDs (strings)")
        bad = [d for d in ds if not (is_repo_id(d) or Path(d).is_dir())]
        if bad:
            raise ConfigError(f"{where}: {bad[0]!r} is neither a Hub dataset ID (owner/name) nor a local folder")
        dup = sorted({d for d in ds if ds.count(d) > 1})
        if dup:
            raise ConfigError(f"{where}: dataset {dup[0]!r} is listed twice")
        cfg.datasets = list(ds)
    if "limit" in raw:
        if not _is_int(raw["limit"]) or raw["limit"] < 1:
            raise ConfigError(f"{where}: limit must be a positive integer, got {raw['limit']!r}")
        cfg.limit = raw["limit"]
    if "pinned" in raw:
        if not isinstance(raw["pinned"], bool):
            raise ConfigError(f"{where}: pinned must be true or false, got {raw['pinned']!r}")
        cfg.pinned = raw["pinned"]
    if raw.get("edges_repo") is not None:
        if not isinstance(raw["edges_repo"], str) or not is_repo_id(raw["edges_repo"]):
            raise ConfigError(f"{where}: edges_repo must be a dataset repo ID (owner/name), got {raw['edges_repo']!r}")
        cfg.edges_repo = raw["edges_repo"]
    if raw.get("variant") is not None:
        if not isinstance(raw["variant"], str) or not raw["variant"].isidentifier():
            raise ConfigError(f"{where}: variant must be a weight variant name such as fp16, got {raw['variant']!r}")
        cfg.variant = raw["variant"]
    if "seed" in raw:
        if not _is_int(raw["seed"]) or raw["seed"] < 0:
            raise ConfigError(f"{where}: seed must be a non-negative integer, got {raw['seed']!r}")
        cfg.seed = raw["seed"]
    if "tolerance" in raw:
        tol = raw["tolerance"]
        if not isinstance(tol, dict) or set(tol) - set(GUARD_FIGURES):
            raise ConfigError(f"{where}: tolerance must be an object with keys {' and '.join(GUARD_FIGURES)}")
        for k, v in tol.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ConfigError(f"{where}: tolerance {k} must be a number between 0 and 1, got {v!r}")
            cfg.tolerance[k] = float(v)
    return cfg


# -- the guard --------------------------------------------------------------------------------------

def _figure(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def evaluate_zoo(zoo_dir: Path, seed: int = 0) -> dict | None:
    """M&C's leave-one-dataset-out figures on the zoo (as ``hubselect evaluate``), or None with nothing to evaluate.

    Only the method the guard watches is run (``mc``, the defaults of ``hubselect rank``); the baselines and
    the paper preset are left to ``hubselect evaluate``.
    """
    from hubselect.evaluate import metrics
    from hubselect.evaluate.protocol import eligible_datasets, leave_one_dataset_out
    from hubselect.rank.estimator import MatchAndChoose
    from hubselect.zoo.tables import ZooTables
    from hubselect.zoo.format import Zoo

    tables = ZooTables.load(Zoo.open(zoo_dir))
    targets = eligible_datasets(tables.records)
    if len(targets) < 2:
        return None
    per = leave_one_dataset_out(tables, {GUARD_METHOD: MatchAndChoose(seed=seed)}, baselines=False, seed=seed)
    summary = metrics.summarize(per)
    row = summary[summary["method"] == GUARD_METHOD].iloc[0]
    return {"format": 1, "method": GUARD_METHOD, "metric": tables.metric, "higher_is_better": tables.higher_is_better,
            "osr": _figure(row["osr"]), "weighted_tau": _figure(row["weighted_tau"]),
            "n_datasets": int(row["n_datasets"]), "n_models": int(len(tables.models)),
            "n_records": int(len(tables.records)), "seed": seed}


def read_committed(zoo_dir: Path) -> dict | None:
    """The figures of the zoo's ``evaluation.json``, or None when the zoo has none. Raises ConfigError."""
    path = zoo_dir / EVALUATION_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"unreadable {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    for k in GUARD_FIGURES:
        v = data.get(k)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
            raise ConfigError(f"{path}: {k} must be a number or null, got {v!r}")
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

def _previous_ok(zoo) -> set[str]:
    from hubselect.crawlers.crawl import load_records
    return {r["model"] for r in load_records(zoo) if r.get("status") == "ok"}


def crawl_step(stage, cfg: RefreshConfig, client) -> dict:
    from hubselect.crawlers.crawl import crawl

    known = _previous_ok(stage)
    summary = crawl(None, stage, limit=cfg.limit, include_pinned=cfg.pinned, refit_features=True, client=client)
    return {"added": sorted(m for m in summary.crawled if m not in known),
            "updated": sorted(m for m in summary.crawled if m in known),
            "unchanged": sorted(summary.unchanged), "skipped": dict(sorted(summary.skipped.items()))}


def sync_step(stage, cfg: RefreshConfig, client) -> dict:
    from hubselect.share.records import default_edges_repo, pull
    from hubselect.errors import HubError

    repo = cfg.edges_repo or default_edges_repo()
    try:
        client.dataset_meta(repo)
    except HubError as exc:
        if exc.reason in ("not_found", "unauthorized"):
            # The Hub answers 401 for a repo that does not exist when no token is sent.
            return {"repo": repo, "records_added": 0, "profiles_added": 0, "skipped": 0, "records_total": None,
                    "warning": f"edge dataset {repo} not found on the Hub (or private and no token): "
                               "no records pulled"}
        # anything else is reported by pull() below, in its own words
    pulled = pull(repo, stage, client=client)
    pulled.pop("zoo", None)     # the staging copy's path: meaningless once the copy is gone
    return pulled


def rank_and_download(datasets: list[str], zoo_dir: Path, download_dir: Path | None, cfg: RefreshConfig,
                      client) -> tuple[list[dict], str | None]:
    """Rank each dataset on the zoo and download its top pipeline; returns (one entry per dataset, cache key)."""
    from hubselect.errors import HubError, UserError
    from hubselect.rank.api import rank

    results, pipelines = [], {}
    for ds in datasets:
        entry: dict = {"dataset": ds}
        try:
            ranking = rank(ds, zoo=zoo_dir, seed=cfg.seed)
            candidates = [r for r in ranking.models if is_repo_id(r.model)]
            if not candidates:
                raise UserError("no ranked model is a Hub repo ID: nothing to download")
            top = candidates[0]
            entry.update(model=top.model, source=top.source, cold_start=ranking.cold_start)
            if download_dir is not None:
                if top.model not in pipelines:
                    meta = client.repo_meta(top.model)
                    folder = top.model.replace("/", "--")
                    files = client.download_loadable_pipeline(top.model, download_dir / folder, variant=cfg.variant)
                    pipelines[top.model] = {"sha": meta.sha, "folder": folder, "files": files, "datasets": []}
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
        # only folders this script made: a plain name inside the download folder
        if isinstance(folder, str) and folder not in keep and "/" not in folder and folder not in ("", ".", ".."):
            shutil.rmtree(download_dir / folder, ignore_errors=True)
    atomic_write_json(manifest, {"pipelines": pipelines})


# -- the refresh ------------------------------------------------------------------------------------

def refresh(zoo_dir: Path, cfg: RefreshConfig, download_dir: Path | None = None, dry_run: bool = False,
            log=lambda msg: None) -> dict:
    """Run steps a–e; returns the summary. Raises GuardFailure (zoo untouched) or UserError."""
    from hubselect.hub import HubClient
    from hubselect.zoo.format import Zoo, atomic_write_json

    zoo = Zoo.open(zoo_dir)
    committed = read_committed(zoo.path)
    client = HubClient()
    summary: dict = {"zoo": str(zoo.path), "dry_run": dry_run, "config": cfg.to_dict()}
    with tempfile.TemporaryDirectory(prefix="hubselect-refresh-") as tmp:
        staging = Path(tmp) / "zoo"
        shutil.copytree(zoo.path, staging)
        stage = Zoo(staging)

        log(f"crawl: the Hub's {cfg.limit} most-downloaded text-to-image diffusers repos"
            + (" and the pinned list" if cfg.pinned else ""))
        summary["models"] = crawl_step(stage, cfg, client)
        log("sync: the shared edge dataset")
        summary["sync"] = sync_step(stage, cfg, client)
        log("guard: leave-one-dataset-out evaluation of mc")
        current = evaluate_zoo(staging, seed=cfg.seed)
        verdict = guard(committed, current, cfg.tolerance)
        summary["guard"] = verdict
        if not verdict["passed"]:
            summary.update(zoo_updated=False, changed_files=[], downloads=[], cache_key=None)
            raise GuardFailure(verdict["reason"], summary)
        if current is not None:
            atomic_write_json(staging / EVALUATION_FILE, current)

        changes = diff_zoos(zoo.path, staging)
        changed = changes["added"] + changes["modified"] + changes["removed"]
        summary["changed_files"] = sorted(changed)
        if changed and not dry_run:
            apply_changes(zoo.path, staging, changes)
        summary["zoo_updated"] = bool(changed) and not dry_run

        if cfg.datasets:
            log(f"rank{' and download' if download_dir else ''}: {len(cfg.datasets)} dataset(s)")
        ranked_zoo = staging if dry_run else zoo.path
        if download_dir is not None:
            download_dir.mkdir(parents=True, exist_ok=True)
        summary["downloads"], summary["cache_key"] = rank_and_download(cfg.datasets, ranked_zoo, download_dir,
                                                                       cfg, client)
    return summary


# -- output -----------------------------------------------------------------------------------------

def summary_lines(s: dict) -> list[str]:
    m = s.get("models") or {}
    lines = [f"models: {len(m.get('added', []))} added, {len(m.get('updated', []))} updated, "
             f"{len(m.get('unchanged', []))} unchanged, {len(m.get('skipped', {}))} skipped"]
    for name in m.get("added", []):
        lines.append(f"  added {name}")
    for name, reason in (m.get("skipped") or {}).items():
        lines.append(f"  skipped {name}: {reason}")
    sync = s.get("sync")
    if sync:
        lines.append(f"sync: {sync['warning']}" if sync.get("warning") else
                     f"sync: {sync['records_added']} new record(s) ({sync['records_total']} in all), "
                     f"{sync['profiles_added']} new profile(s) from {sync['repo']}")
    g = s.get("guard")
    if g:
        lines.append(f"guard: {g['status']}: {g['reason']}")
    if g and not g["passed"]:
        lines.append("zoo: left untouched")
    elif "zoo_updated" in s:
        n = len(s.get("changed_files", []))
        lines.append(f"zoo: {n} file(s) changed" + (" (dry run: zoo left as it was)" if s["dry_run"] and n else
                                                     f", written to {s['zoo']}" if n else ", nothing to write"))
    for d in s.get("downloads", []):
        if d.get("error"):
            lines.append(f"rank {d['dataset']}: failed: {d['error']}")
        elif d.get("path"):
            lines.append(f"rank {d['dataset']}: top {d['model']} ({d['source']}), {d['files']} file(s) at "
                         f"{d['sha'][:12]} in {d['path']}")
        else:
            lines.append(f"rank {d['dataset']}: top {d['model']} ({d['source']})")
    if s.get("cache_key"):
        lines.append(f"cache key: {s['cache_key']}")
    return lines


def write_github_output(path: Path, summary: dict) -> None:
    """``key=value`` lines for later workflow steps (``$GITHUB_OUTPUT``)."""
    m = summary.get("models") or {}
    line = (f"{len(m.get('added', []))} added, {len(m.get('updated', []))} updated, "
            f"{len(m.get('unchanged', []))} unchanged; guard {summary.get('guard', {}).get('status', 'n/a')}")
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"changed={'true' if summary.get('zoo_updated') else 'false'}\n")
        f.write(f"cache_key={summary.get('cache_key') or ''}\n")
        f.write(f"summary={line}\n")


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _warn(message: str) -> None:
    """A warning on stderr; as a workflow annotation inside GitHub Actions."""
    message = _one_line(message)
    if os.environ.get("GITHUB_ACTIONS") == "true":
        print(f"::warning::{PROG}: {message}", file=sys.stderr)
    else:
        print(f"{PROG}: warning: {message}", file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    def error(self, message):   # one line, exit 2 (argparse prints the usage as well)
        raise ConfigError(message)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = _Parser(prog="refresh_zoo.py", description=__doc__.splitlines()[0])
    p.add_argument("--zoo", type=Path, help="the zoo to refresh in place (default: $HUBSELECT_ZOO, else the user's "
                   "zoo under $HF_HOME/hubselect/zoo, made from the shipped zoo on first use)")
    p.add_argument("--config", type=Path, help="JSON configuration (datasets, limit, pinned, edges_repo, variant, "
                                               "seed, tolerance)")
    p.add_argument("--limit", type=_positive_int, help="how many most-downloaded repos to list (overrides the config)")
    p.add_argument("--no-pinned", action="store_true", help="leave out crawlers/pinned.txt (overrides the config)")
    p.add_argument("--edges-repo", help="edge dataset repo ID (overrides the config)")
    p.add_argument("--download-dir", type=Path, help="download each configured dataset's top pipeline here")
    p.add_argument("--dry-run", action="store_true", help="do everything on the staging copy, write nothing")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.add_argument("--github-output", type=Path, help="append changed/cache_key/summary lines to this file")
    return p.parse_args(argv)


def _quiet_libraries() -> None:
    from huggingface_hub.utils import disable_progress_bars

    from hubselect.cli.root import quiet_libraries
    quiet_libraries(PROG)
    disable_progress_bars()


def main(argv: list[str] | None = None, quiet_libraries: bool = False) -> int:
    """The command line; ``quiet_libraries`` silences library logging and warnings (the script itself does)."""
    try:
        args = parse_args(argv)
        cfg = load_config(args.config)
        if args.limit is not None:
            cfg.limit = args.limit
        if args.no_pinned:
            cfg.pinned = False
        if args.edges_repo is not None:
            if not is_repo_id(args.edges_repo):
                raise ConfigError(f"--edges-repo: expected a dataset repo ID (owner/name), got {args.edges_repo!r}")
            cfg.edges_repo = args.edges_repo
        from hubselect.zoo.format import default_zoo_dir
        zoo_dir = args.zoo if args.zoo is not None else default_zoo_dir(write=True)   # never the shipped zoo
        if not (zoo_dir / "zoo.json").is_file():
            raise ConfigError(f"no zoo at {zoo_dir} (zoo.json missing); pass --zoo DIR")
    except ConfigError as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 2

    if quiet_libraries:
        _quiet_libraries()
    from hubselect.errors import UserError

    def log(message: str) -> None:
        print(f"{PROG}: {message}", file=sys.stderr, flush=True)

    code = 0
    try:
        summary = refresh(zoo_dir, cfg, download_dir=args.download_dir, dry_run=args.dry_run, log=log)
    except GuardFailure as exc:
        summary, code = exc.summary, 1
    except (UserError, ConfigError) as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    if summary.get("sync", {}).get("warning"):
        _warn(summary["sync"]["warning"])
    for d in summary.get("downloads", []):
        if d.get("error"):
            _warn(f"rank/download for {d['dataset']} failed: {d['error']}")
    if args.github_output is not None:
        write_github_output(args.github_output, summary)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print("\n".join(summary_lines(summary)))
    if code == 1:
        print(f"{PROG}: guard failed, zoo left untouched: {summary['guard']['reason']}", file=sys.stderr)
    return code


if __name__ == "__main__":
    raise SystemExit(main(quiet_libraries=True))
