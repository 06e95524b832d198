"""``hubselect sweep``: fine-tune the (model, dataset) pairs the shared edge dataset lacks, locally or as
Hugging Face Jobs, or suggest the pairs that would teach the ranking most (``--suggest K``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hubselect.cli.options import EdgesRepoOption, JsonOption, TrainingCommand, ZooOption, training_options
from hubselect.cli.root import echo_json, progress_bar
from hubselect.errors import UserError


@training_options("steps", "batch_size", "lr", "rank", "seed", "resolution", "val_size", "max_samples",
                  "sample_steps", "mixed_precision",
                  help_for={"seed": "Seed of every run (and of the --suggest ensemble).",
                            "steps": "Training steps per pair (paper: 10 000)."})
def sweep(
    models: Optional[list[str]] = typer.Option(
        None, "--models", help="Hub model IDs or pipeline folders (comma-separated or repeated)."),
    datasets: Optional[list[str]] = typer.Option(
        None, "--datasets", help="Hub dataset IDs or captioned image folders (comma-separated or repeated)."),
    backend: str = typer.Option("local", "--backend", help="Where the pairs run: {backends} (Hugging Face Jobs)."),
    suggest_k: Optional[int] = typer.Option(
        None, "--suggest", min=1, metavar="K",
        help="List the K pending pairs whose results would most reduce the ranking's uncertainty "
             "(default candidates: the zoo's models and datasets); add --run to run them."),
    run: bool = typer.Option(False, "--run", help="With --suggest: run the suggested pairs on --backend."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the pending pairs (and Jobs); run nothing."),
    training: dict = None,
    zoo: Optional[Path] = ZooOption,
    edges_repo: Optional[str] = EdgesRepoOption,
    image: Optional[str] = typer.Option(None, "--image", help="hf-jobs: Docker image (default: a public "
                                                              "PyTorch CUDA image)."),
    flavor: str = typer.Option("a10g-small", "--flavor", help="hf-jobs: hardware flavor."),
    timeout: str = typer.Option("8h", "--timeout", help="hf-jobs: longest a Job may run (seconds, or 30m, 8h)."),
    namespace: Optional[str] = typer.Option(None, "--namespace", help="hf-jobs: user or org to run the Jobs in "
                                                                      "(default: the token's user)."),
    install: str = typer.Option("hubselect", "--install", help="hf-jobs: what the Job pip-installs."),
    wait: bool = typer.Option(False, "--wait", help="hf-jobs: poll the Jobs until they finish."),
    poll_interval: float = typer.Option(30.0, "--poll-interval", min=0.01, help="hf-jobs: seconds between polls."),
    ensemble: int = typer.Option(8, "--ensemble", min=2, help="--suggest: ensemble members."),
    json_out: bool = JsonOption,
):
    """Fine-tune the (model, dataset) pairs that the shared edge dataset has no record of yet."""
    from hubselect.sweep import BACKENDS, JOB_IMAGE, suggest, suggested_pairs, sweep as run_sweep

    if backend not in BACKENDS:
        raise UserError(f"unknown --backend {backend!r}: {' or '.join(BACKENDS)}")
    if run and suggest_k is None:
        raise UserError("--run goes with --suggest K (a plain sweep runs its pending pairs)")
    suggested = None
    pairs = None
    if suggest_k is not None:
        suggested = suggest(suggest_k, zoo=zoo, models=models, datasets=datasets, edges_repo=edges_repo,
                            ensemble=ensemble, seed=training["seed"])
        if not run:
            _print_suggestions(suggested, json_out)
            return
        pairs = suggested_pairs(suggested)
    elif not models or not datasets:
        raise UserError("sweep needs --models and --datasets (or --suggest K)")
    report = run_sweep(models or [], datasets or [], backend=backend, zoo=zoo, settings=training,
                       edges_repo=edges_repo, pairs=pairs, dry_run=dry_run, wait=wait, poll_interval=poll_interval,
                       image=image or JOB_IMAGE, flavor=flavor, timeout=timeout, namespace=namespace, install=install,
                       progress=progress_bar("sweep", "run" if backend == "local" else "job"),
                       wait_progress=progress_bar("wait", "job"))
    if json_out:
        echo_json({"suggest": suggested, **report} if suggested else report)
    else:
        if suggested:
            _print_suggestions(suggested, False)
        _print_sweep(report)
    if report["failed"]:
        raise typer.Exit(1)
def _print_suggestions(result: dict, json_out: bool) -> None:
    if json_out:
        echo_json(result)
        return
    for note in result["notes"]:
        typer.echo(f"note: {note}", err=True)
    if not result["suggestions"]:
        typer.echo("no pending pair to suggest")
        return
    from rich.console import Console
    from rich.table import Table

    how = (f"ensemble of {result['ensemble']}, seed {result['seed']}" if result["method"] == "ensemble"
           else "cold-start rule")
    table = Table(title=f"{len(result['suggestions'])} of {result['candidates']} pending pair(s) to measure next "
                        f"({how})", show_edge=False, box=None, pad_edge=False, title_justify="left")
    for col, justify in (("#", "right"), ("model", "left"), ("dataset", "left"), ("score", "right"),
                         ("std", "right"), ("p(top)", "right"), ("predicted rank", "right"), ("reason", "left")):
        table.add_column(col, justify=justify)
    for s in result["suggestions"]:
        table.add_row(str(s["rank"]), s["model"], s["dataset"],
                      *("-" if s[k] is None else f"{s[k]:.3f}" for k in ("score", "std", "p_top")),
                      "-" if s["predicted_rank"] is None else f"{s['predicted_rank']:.1f}", s["reason"])
    Console(width=200).print(table)


def _print_sweep(report: dict) -> None:
    pending = report["pending"]
    if report["requested"] is not None:
        typer.echo(f"{report['requested'] - len(pending)} of {report['requested']} pair(s) already measured "
                   f"({report['metric']}); {len(pending)} pending")
    if report["dry_run"]:
        for run in report["runs"] or pending:
            if "command" in run:        # a Job: its shell command (it holds no secret)
                typer.echo(f"would submit {run['model']} on {run['dataset']} ({run['flavor']}, {run['image']}):\n"
                           f"    {run['command'][-1]}")
            else:
                typer.echo(f"would run {run['model']} on {run['dataset']}")
        return
    for run in report["runs"]:
        where = f"{run['model']} on {run['dataset']}"
        if run["status"] == "done":
            typer.echo(f"{'done':<10} {where}: {run['metric']} {run['initial_score']:.4f} -> {run['score']:.4f} "
                       f"(record {run['record_id'][:12]}, {run['seconds']:.0f} s)")
        elif run["status"] == "failed":
            typer.echo(f"{'failed':<10} {where}: {run['error']}")
        else:
            typer.echo(f"{run['stage']:<10} {where}: Job {run['job_id']} {run['url']}"
                       + (" (submitted before)" if run["status"] == "running" else "")
                       + (f" ({run['message']})" if run.get("message") else ""))
            for line in run.get("log_tail") or []:
                typer.echo(f"    {line}")
    if report["failed"]:
        typer.echo(f"{report['failed']} pair(s) failed", err=True)


def register(app: typer.Typer) -> None:
    app.command(cls=TrainingCommand)(sweep)
