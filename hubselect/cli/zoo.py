"""The zoo's own commands: ``crawl`` adds or refreshes pipelines, ``zoo`` lists them."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hubselect.cli.options import JsonOption, ZooOption
from hubselect.cli.root import echo_json, progress_bar


def crawl(
    repos: Optional[list[str]] = typer.Argument(None, metavar="REPO_ID_OR_PATH",
                                                help="Hub repo IDs or local pipeline folders. "
                                                     "Default: the most-downloaded text-to-image diffusers repos."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="How many Hub repos to list (no REPO given)."),
    zoo: Optional[Path] = ZooOption,
    pinned: bool = typer.Option(True, "--pinned/--no-pinned",
                                help="With no REPO: also crawl the pinned repos (crawlers/pinned.txt)."),
    refit_features: bool = typer.Option(False, "--refit-features",
                                        help="Refit the model-feature schema on the whole zoo."),
    json_out: bool = JsonOption,
):
    """Add or refresh text-to-image pipelines: configs and cards only, never weights or code."""
    from hubselect.crawlers.crawl import check_targets, crawl as run_crawl
    from hubselect.zoo.format import Zoo

    check_targets(repos or [])           # bad input never creates a zoo
    target = Zoo.open(zoo, create=True)
    summary = run_crawl(repos or None, target, limit=limit, include_pinned=pinned, refit_features=refit_features,
                        progress=progress_bar("crawl", "repo"))
    if json_out:
        echo_json({"zoo": str(target.path), **summary.to_dict()})
        return
    for model, reason in summary.skipped.items():
        typer.echo(f"skipped {model}: {reason}", err=True)
    typer.echo(summary.line())


def zoo_list(zoo: Optional[Path] = ZooOption, json_out: bool = JsonOption):
    """List the zoo's models: parameters, TFLOPs per image, license, fine-tuning records."""
    from hubselect.zoo.format import Zoo
    from hubselect.zoo.listing import list_models

    rows = list_models(Zoo.open(zoo))
    if json_out:
        echo_json(rows)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False, box=None, pad_edge=False)
    for col, justify in (("model", "left"), ("denoiser", "right"), ("total", "right"),
                         ("TFLOP/img", "right"), ("license", "left"), ("records", "right")):
        table.add_column(col, justify=justify)
    for r in rows:
        table.add_row(r["model"], _billions(r["params_denoiser"]), _billions(r["params_total"]),
                      "-" if r["tflops_per_image"] is None else f"{r['tflops_per_image']:.1f}",
                      r["license"] or "unknown", str(r["records"]))
    Console(width=200).print(table)


def _billions(n) -> str:
    return "-" if n is None else f"{n / 1e9:.2f} B"


def register(app: typer.Typer) -> None:
    app.command()(crawl)
    app.command("zoo")(zoo_list)
