"""``hubselect sync``: the shared edge dataset (fine-tuning records, dataset profiles) pulled into the zoo."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hubselect.cli.options import EDGES_REPO_HELP, JsonOption, ZooOption
from hubselect.cli.root import echo_json, progress_bar


def sync(
    repo: Optional[str] = typer.Option(None, "--repo", help=EDGES_REPO_HELP),
    only: Optional[list[str]] = typer.Option(None, "--only", metavar="WRITER",
                                             help="Take records and profiles only from these writers (Hub users; "
                                                  "repeatable): an allow-list, kept in the zoo's trust.json."),
    distrust: Optional[list[str]] = typer.Option(None, "--distrust", metavar="WRITER",
                                                 help="Never take WRITER's files; those already synced leave the "
                                                      "zoo (repeatable; kept in trust.json)."),
    trust: Optional[list[str]] = typer.Option(None, "--trust", metavar="WRITER",
                                              help="Take WRITER's files again: off the deny-list, onto the "
                                                   "allow-list when there is one (repeatable)."),
    trust_everyone: bool = typer.Option(False, "--trust-everyone",
                                        help="Drop the allow-list: every writer but the distrusted ones counts, "
                                             "one vote each (what a fresh zoo does)."),
    zoo: Optional[Path] = ZooOption,
    json_out: bool = JsonOption,
):
    """Pull the shared edge dataset (fine-tuning records and dataset profiles) into the zoo.

    Every file is checked before the zoo changes (bad ones are skipped and counted); the zoo
    changes in one step; only files added since the last sync are downloaded. Each record counts
    for its writer (the Hub commit author), one vote per writer.
    """
    from hubselect.share.sync import pull

    summary = pull(repo, zoo, trust=trust or (), distrust=distrust or (), only=only or (),
                   trust_everyone=trust_everyone,
                   progress=progress_bar("sync", "file"))   # no --zoo: the user's zoo, never the shipped one
    if json_out:
        echo_json(summary)
        return
    at = f"{summary['repo']}@{summary['revision'][:12]}"
    if summary["up_to_date"]:
        typer.echo(f"{summary['zoo']} is up to date with {at}: {summary['records_synced']} record(s) from "
                   f"{len(summary['writers'])} writer(s)" + (f", {summary['skipped']} file(s) skipped"
                                                              if summary["skipped"] else ""))
        return
    typer.echo(f"synced {at} into {summary['zoo']}: {summary['records_added']} new record(s)"
               + (f", {summary['records_removed']} removed" if summary["records_removed"] else "")
               + f" ({summary['records_total']} in all; {summary['records_synced']} from {len(summary['writers'])} "
               f"writer(s)), {summary['profiles_added']} new profile(s)"
               + (f", {summary['profiles_removed']} removed" if summary["profiles_removed"] else "")
               + (f", {summary['skipped']} file(s) skipped" if summary["skipped"] else "")
               + (f", {sum(summary['excluded'].values())} file(s) of untrusted writers left out"
                  if summary["excluded"] else "")
               + f"; {summary['downloaded']} file(s) downloaded")


def register(app: typer.Typer) -> None:
    app.command()(sync)
