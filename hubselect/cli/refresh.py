"""``hubselect refresh``: the scheduled zoo refresh (:func:`hubselect.refresh.refresh_zoo`) as a command.

``.github/workflows/refresh-zoo.yml`` runs it every week on zoo_cache/. Exit codes: 0 done (zoo updated or
already current), 1 the guard refused the update (zoo untouched), 2 bad input (options, configuration, zoo)
or a Hub failure that stops the refresh.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from hubselect.cli.options import EDGES_REPO_HELP, JsonOption, ZooOption
from hubselect.cli.root import echo_json
from hubselect.constants import in_github_actions

PROG = "hubselect"


def refresh(
    zoo: Optional[Path] = ZooOption,
    config: Optional[Path] = typer.Option(None, "--config", dir_okay=False,
                                          help="JSON configuration: datasets, limit, pinned, edges_repo, variant, "
                                               "seed, tolerance (every key optional)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1,
                                        help="How many most-downloaded Hub repos to crawl (overrides the config)."),
    no_pinned: bool = typer.Option(False, "--no-pinned",
                                   help="Leave out the pinned repos, crawlers/pinned.txt (overrides the config)."),
    edges_repo: Optional[str] = typer.Option(None, "--edges-repo",
                                             help=f"{EDGES_REPO_HELP} Overrides the config's edges_repo."),
    download_dir: Optional[Path] = typer.Option(None, "--download-dir", file_okay=False,
                                                help="Download each configured dataset's top pipeline into "
                                                     "DIR/<owner>--<name>, with DIR/manifest.json."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Do everything on the staging copy; write nothing."),
    json_out: bool = JsonOption,
    github_output: Optional[Path] = typer.Option(None, "--github-output", dir_okay=False,
                                                 help="Append changed=, cache_key= and summary= lines to FILE "
                                                      "(the workflow's $GITHUB_OUTPUT)."),
):
    """Crawl, sync, refit and evaluate on a staging copy; update the zoo only if the evaluation holds.

    The zoo is refreshed in place: --zoo DIR, else your zoo (never the shipped one). Exit code 1 when the
    guard refuses the update, with the zoo left untouched.
    """
    from hubselect.hub import check_repo_id
    from hubselect.refresh import load_config, refresh_zoo

    cfg = load_config(config)
    if limit is not None:
        cfg = replace(cfg, limit=limit)
    if no_pinned:
        cfg = replace(cfg, pinned=False)
    if edges_repo is not None:
        cfg = replace(cfg, edges_repo=check_repo_id(edges_repo, "--edges-repo"))

    from huggingface_hub.utils import disable_progress_bars
    disable_progress_bars()     # one line per step in the workflow's log, not a bar per file

    summary = refresh_zoo(zoo, cfg, download_dir=download_dir, dry_run=dry_run,
                          log=lambda message: typer.echo(f"{PROG}: {message}", err=True))
    if summary["sync"].get("warning"):
        _warn(summary["sync"]["warning"])
    for entry in summary["downloads"]:
        if entry.get("error"):
            _warn(f"rank/download for {entry['dataset']} failed: {entry['error']}")
    if github_output is not None:
        write_github_output(github_output, summary)
    if json_out:
        echo_json(summary)
    else:
        typer.echo("\n".join(summary_lines(summary)))
    if not summary["guard"]["passed"]:
        typer.echo(f"{PROG}: guard failed, zoo left untouched: {summary['guard']['reason']}", err=True)
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``hubselect refresh`` to ``app``."""
    app.command("refresh")(refresh)


def summary_lines(s: dict) -> list[str]:
    """The summary as the command prints it without ``--json``."""
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


def _warn(message: str) -> None:
    """A warning on stderr, in one line; as a workflow annotation inside GitHub Actions."""
    message = " ".join(str(message).split())
    if in_github_actions():
        typer.echo(f"::warning::{PROG}: {message}", err=True)
    else:
        typer.echo(f"{PROG}: warning: {message}", err=True)
