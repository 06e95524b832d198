"""``hubselect evaluate``: the paper's leave-one-dataset-out protocol on the zoo, with optional studies."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hubselect.cli.options import JsonOption, RegistryCommand, ZooOption
from hubselect.cli.root import echo_json, progress_bar


def evaluate(
    zoo: Optional[Path] = ZooOption,
    plots: Optional[Path] = typer.Option(None, "--plots", file_okay=False,
                                         help="Write CSV files, report.md and PNG plots into DIR."),
    study: Optional[list[str]] = typer.Option(None, "--study",
                                              help="Also run a study: {studies} (repeatable)."),
    sparsity_seeds: int = typer.Option(5, "--sparsity-seeds", min=1, help="Seeds per sparsity level."),
    seed: int = typer.Option(0, "--seed", help="Seed of the predictors and the studies' random draws."),
    json_out: bool = JsonOption,
):
    """The paper's leave-one-dataset-out protocol on the zoo: M&C against its baselines."""
    from hubselect.evaluate.protocol import evaluate as run_evaluate, frame_to_markdown, markdown_table, sparsity_table

    result = run_evaluate(zoo, studies=tuple(study or ()), seed=seed, sparsity_seeds=sparsity_seeds,
                          progress=progress_bar("evaluate", "step"))
    if plots is not None:
        from hubselect.evaluate.protocol import write_report
        write_report(result, plots, zoo_dir=zoo)
    if json_out:
        echo_json(result.to_dict())
        return
    direction = "higher is better" if result.higher_is_better else "lower is better"
    typer.echo(markdown_table(result.summary, f"Leave-one-dataset-out over {len(result.datasets)} datasets "
                                              f"({result.metric}, {direction})"))
    if result.notes:
        typer.echo("\nNotes:")
        for line in result.notes:
            typer.echo(f"- {line}")
    for name, table in result.studies.items():
        typer.echo("")
        if name == "sparsity":
            typer.echo(f"**sparsity** (mean ± std over seeds)\n\n{frame_to_markdown(sparsity_table(table))}")
        elif len(table):
            typer.echo(markdown_table(table, name) if "metric" not in table.columns
                       else f"**{name}**\n\n{frame_to_markdown(table)}")
    typer.echo(f"\n{result.seconds:.1f} s" + (f"; files in {plots}" if plots else ""))


def register(app: typer.Typer) -> None:
    app.command(cls=RegistryCommand)(evaluate)
