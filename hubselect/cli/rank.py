"""``hubselect rank``, the main job: the zoo's pipelines ranked for a dataset, best first."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hubselect.cli.options import (
    CaptionColumnOption,
    ImageColumnOption,
    JsonOption,
    RegistryCommand,
    SplitOption,
    ZooOption,
    probe_option,
)
from hubselect.cli.root import echo_json, progress_bar
from hubselect.constants import DEFAULT_PREDICTOR
from hubselect.errors import UserError


def rank(
    dataset: str = typer.Argument(..., metavar="DATASET",
                                  help="A dataset the zoo knows, a Hub dataset ID or a local image folder."),
    top: Optional[int] = typer.Option(None, "--top", min=1, help="Show only the K best models."),
    zoo: Optional[Path] = ZooOption,
    probe: Optional[str] = probe_option("Dataset probe for a new dataset"),
    holdout: bool = typer.Option(False, "--holdout", help="Ignore the dataset's own records and predict all models."),
    predictor: str = typer.Option(DEFAULT_PREDICTOR, "--predictor",
                                  help="The learned ranker: {predictors}."),
    license_ids: Optional[list[str]] = typer.Option(
        None, "--license", metavar="ID[,ID...]",
        help="Keep only models under these licence IDs (as model cards spell them, e.g. apache-2.0,openrail++)."),
    max_tflops: Optional[float] = typer.Option(None, "--max-tflops", help="Keep only models of at most X TFLOP "
                                                                          "per generated image."),
    max_params: Optional[float] = typer.Option(None, "--max-params",
                                               help="Keep only models whose denoiser has at most X billion "
                                                    "parameters."),
    explain: bool = typer.Option(False, "--explain", help="One line per model on why it is placed there: its "
                                                          "average rank and its rank on the nearest datasets."),
    download: Optional[Path] = typer.Option(None, "--download", file_okay=False,
                                            help="Download the top pipeline (safetensors, configs) into DIR."),
    n: int = typer.Option(1000, "--n", min=2, help="Images sampled to profile a new dataset."),
    image_column: Optional[str] = ImageColumnOption,
    caption_column: Optional[str] = CaptionColumnOption,
    split: Optional[str] = SplitOption,
    seed: int = typer.Option(0, "--seed", help="Seed of the image sample and of the predictor."),
    json_out: bool = JsonOption,
):
    """The main job: rank the zoo's pipelines for DATASET, best first."""
    from hubselect.rank.api import rank as run_rank

    ranking = run_rank(dataset, zoo=zoo, top=top, probe=probe, holdout=holdout, predictor=predictor, seed=seed,
                       n=n, image_column=image_column, caption_column=caption_column, split=split,
                       progress=progress_bar("profile", "img"), licenses=license_ids, max_tflops=max_tflops,
                       max_params=max_params)
    # The ranking is printed before any download, so a download that fails loses nothing.
    if not json_out:
        _print_ranking(ranking, explain)
    downloaded, failure = None, None
    if download is not None:
        from hubselect.rank.loadable import download_top
        try:
            downloaded = download_top(ranking, download)
        except UserError as exc:
            failure = str(exc)
    if json_out:
        out = ranking.to_dict()
        if download is not None:
            out["download"] = downloaded if failure is None else {"error": failure}
        echo_json(out)
    elif downloaded is not None:
        typer.echo(f"downloaded {downloaded['model']} to {downloaded['path']} ({len(downloaded['files'])} files)")
    if failure is not None:
        raise UserError(failure)


def _print_ranking(ranking, explain: bool) -> None:
    for note in ranking.notes:
        typer.echo(f"note: {note}", err=True)
    from rich.console import Console
    from rich.table import Table

    direction = "higher is better" if ranking.higher_is_better else "lower is better"
    table = Table(title=f"{ranking.dataset}: models ranked for fine-tuning ({ranking.metric}, {direction})",
                  show_edge=False, box=None, pad_edge=False, title_justify="left")
    position = "published position" if ranking.cold_start else "expected position"
    for col, justify in (("rank", "right"), ("model", "left"), (position, "right"), ("confidence", "right"),
                         ("TFLOP/img", "right"), ("params (B)", "right"), ("license", "left"), ("source", "left")):
        table.add_column(col, justify=justify)
    if explain:
        table.add_column("why", justify="left")
    for r in ranking.models:
        shown = (f"{r.measured_score:.4g} (measured)" if r.source == "measured"
                 else "-" if r.score is None
                 else f"{r.score:.0f}" if r.source == "prior" else f"{r.score:.1f}")
        row = [str(r.rank), r.model, shown, "-" if r.confidence is None else f"{r.confidence:.2f}",
               "-" if r.tflops_per_image is None else f"{r.tflops_per_image:.1f}",
               "-" if r.params_denoiser_b is None else f"{r.params_denoiser_b:.2f}", r.license or "unknown", r.source]
        table.add_row(*row, *([r.why or ""] if explain else []))
    Console(width=250 if explain else 200).print(table)
    if ranking.shortlist:
        s = ranking.shortlist
        typer.echo(f"fine-tune the first {s['k']}: on this zoo the best model was among them for "
                   f"{100 * s['hit_rate']:.0f} % of datasets (each ranked with its own records held out, "
                   f"{s['datasets']} datasets)")


def register(app: typer.Typer) -> None:
    app.command(cls=RegistryCommand)(rank)
