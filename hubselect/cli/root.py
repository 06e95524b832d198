"""The ``hubselect`` command line (Typer, in the manner of the Hub's own ``hf`` CLI).

Every command takes ``--zoo DIR``; data comes out as JSON with ``--json``; long work draws a
progress bar on stderr; bad input is one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path
from typing import Optional

import typer

try:  # Typer >= 0.20 vendors click as typer._click; older releases use click itself
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover
    from click import exceptions as click_exceptions

from hubselect.errors import UserError

app = typer.Typer(
    name="hubselect",
    help="Which pretrained text-to-image pipeline on the Hugging Face Hub should you fine-tune on your dataset?",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

ZooOption = typer.Option(None, "--zoo", help="Zoo directory (default: $HUBSELECT_ZOO, else your zoo in "
                                              "$HF_HOME/hubselect/zoo if it exists, else the shipped zoo; "
                                              "commands that write never write the shipped zoo).",
                         file_okay=False)
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")
# The dataset-column options of every command that reads a dataset (rank, profile, finetune).
ImageColumnOption = typer.Option(None, "--image-column",
                                 help="Image column of a Hub dataset (default: the first image feature).")
CaptionColumnOption = typer.Option(None, "--caption-column",
                                   help="Caption column (default: text, caption, prompt, ... when present).")
SplitOption = typer.Option(None, "--split", help="Split to use (default: train when present, else the first).")


def _finite(obj):
    """``obj`` with every NaN or infinite float replaced by None: strict JSON parsers reject them."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def _echo_json(obj) -> None:
    """What ``--json`` prints: strict JSON (no NaN, no Infinity), indented."""
    typer.echo(json.dumps(_finite(obj), indent=2, allow_nan=False, default=str))


def _progress_bar(desc: str, unit: str):
    """A ``(done, total, item)`` callback drawing a tqdm bar on stderr.

    The bar starts at the first report, counting what was already done as its initial value: tqdm's
    rate is then (done - initial) / time since that report, so units finished before the bar existed
    never show as millions per second (the rate reads ``?`` until a unit finishes under the bar).
    """
    from tqdm.auto import tqdm
    state: dict = {}

    def update(done: int, total: int, item: str | None) -> None:
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(total=total, initial=done, desc=desc, unit=unit, file=sys.stderr,
                                      disable=None, leave=False)
        bar.n = done
        bar.set_postfix_str(item or "", refresh=False)
        bar.refresh()
        if done >= total:
            bar.close()
    return update


@app.command()
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
                        progress=_progress_bar("crawl", "repo"))
    if json_out:
        _echo_json({"zoo": str(target.path), **summary.to_dict()})
        return
    for model, reason in summary.skipped.items():
        typer.echo(f"skipped {model}: {reason}", err=True)
    typer.echo(summary.line())


@app.command()
def rank(
    dataset: str = typer.Argument(..., metavar="DATASET",
                                  help="A dataset the zoo knows, a Hub dataset ID or a local image folder."),
    top: Optional[int] = typer.Option(None, "--top", min=1, help="Show only the K best models."),
    zoo: Optional[Path] = ZooOption,
    probe: Optional[str] = typer.Option(None, "--probe", help="Dataset probe (default: the zoo's, clip)."),
    holdout: bool = typer.Option(False, "--holdout", help="Ignore the dataset's own records and predict all models."),
    predictor: str = typer.Option("yetirank", "--predictor",
                                  help="yetirank (default), catboost (the paper's rank classifier), regressor, "
                                       "xgboost, rf, mlp or svc."),
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
                       progress=_progress_bar("profile", "img"), licenses=license_ids, max_tflops=max_tflops,
                       max_params=max_params)
    # The ranking is printed before any download, so a download that fails loses nothing.
    if not json_out:
        _print_ranking(ranking, explain)
    downloaded, failure = None, None
    if download is not None:
        try:
            downloaded = _download_top(ranking, download)
        except UserError as exc:
            failure = str(exc)
    if json_out:
        out = ranking.to_dict()
        if download is not None:
            out["download"] = downloaded if failure is None else {"error": failure}
        _echo_json(out)
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


def _download_top(ranking, directory: Path) -> dict:
    from hubselect.errors import HubError
    from hubselect.hub import HubClient, is_repo_id

    candidates = [r.model for r in ranking.models if is_repo_id(r.model)]
    if not candidates:
        raise UserError("no ranked model is a Hub repo ID: nothing to download")
    top_model = candidates[0]
    try:
        files = HubClient().download_loadable_pipeline(top_model, directory)
    except HubError as exc:
        raise UserError(f"download of {top_model} failed: {exc}") from None
    return {"model": top_model, "path": str(directory), "files": files}


@app.command()
def evaluate(
    zoo: Optional[Path] = ZooOption,
    plots: Optional[Path] = typer.Option(None, "--plots", file_okay=False,
                                         help="Write CSV files, report.md and PNG plots into DIR."),
    study: Optional[list[str]] = typer.Option(None, "--study",
                                              help="Also run a study: sparsity, ablation, predictors, metrics "
                                                   "(repeatable)."),
    sparsity_seeds: int = typer.Option(5, "--sparsity-seeds", min=1, help="Seeds per sparsity level."),
    seed: int = typer.Option(0, "--seed", help="Seed of the predictors and the studies' random draws."),
    json_out: bool = JsonOption,
):
    """The paper's leave-one-dataset-out protocol on the zoo: M&C against its baselines."""
    from hubselect.evaluate.protocol import evaluate as run_evaluate, frame_to_markdown, markdown_table, sparsity_table

    result = run_evaluate(zoo, studies=tuple(study or ()), seed=seed, sparsity_seeds=sparsity_seeds,
                          progress=_progress_bar("evaluate", "step"))
    if plots is not None:
        from hubselect.evaluate.protocol import write_report
        write_report(result, plots, zoo_dir=zoo)
    if json_out:
        _echo_json(result.to_dict())
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


@app.command()
def sync(
    repo: Optional[str] = typer.Option(None, "--repo",
                                       help="Edge dataset repo ID (default: $HUBSELECT_EDGES_REPO, "
                                            "else hubselect/t2i-finetuning-records)."),
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
    from hubselect.share.records import pull

    summary = pull(repo, zoo, trust=trust or (), distrust=distrust or (), only=only or (),
                   trust_everyone=trust_everyone,
                   progress=_progress_bar("sync", "file"))   # no --zoo: the user's zoo, never the shipped one
    if json_out:
        _echo_json(summary)
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


@app.command()
def finetune(
    model: str = typer.Option(..., "--model", help="A Hub model repo ID or a local diffusers pipeline folder."),
    dataset: str = typer.Option(..., "--dataset", help="A Hub dataset ID or a local image folder with captions."),
    steps: int = typer.Option(10_000, "--steps", help="Training steps (paper: 10 000)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Global batch size (paper: 8)."),
    lr: float = typer.Option(1e-5, "--lr", help="AdamW learning rate, constant (paper: 1e-5)."),
    rank: int = typer.Option(4, "--rank", help="LoRA rank (alpha = rank)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every random draw of the run."),
    zoo: Optional[Path] = ZooOption,
    push: bool = typer.Option(False, "--push", help="Publish the adapter and the record on the Hub."),
    probe: Optional[str] = typer.Option(None, "--probe", help="Probe for FID/KID/CMMD (default: the zoo's)."),
    resolution: Optional[int] = typer.Option(None, "--resolution", help="Training and sampling size in pixels "
                                                                        "(default: the pipeline's native one)."),
    val_size: int = typer.Option(256, "--val-size", help="Validation images (scored; never trained on)."),
    max_samples: int = typer.Option(10_000, "--max-samples", help="At most this many items of the dataset."),
    sample_steps: int = typer.Option(30, "--sample-steps", help="Denoising steps per validation image."),
    guidance_scale: Optional[float] = typer.Option(None, "--guidance-scale",
                                                   help="Guidance when sampling (default: the pipeline's)."),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every", help="Save a resumable checkpoint every N steps."),
    output: Optional[Path] = typer.Option(None, "--output", file_okay=False,
                                          help="Run folder (default: "
                                               "$HF_HOME/hubselect/runs/<model>__<dataset>__<hash>;"
                                               " the same command resumes there)."),
    mixed_precision: str = typer.Option("no", "--mixed-precision", help="no, fp16 or bf16 (accelerate)."),
    gradient_checkpointing: bool = typer.Option(False, "--gradient-checkpointing",
                                                help="Trade compute for memory where the denoiser supports it."),
    adapter_repo: Optional[str] = typer.Option(None, "--adapter-repo",
                                               help="Model repo for the adapter "
                                                    "(default: <user>/<model>-<dataset>-lora)."),
    edges_repo: Optional[str] = typer.Option(None, "--edges-repo",
                                             help="Edge dataset repo (default: $HUBSELECT_EDGES_REPO or "
                                                  "hubselect/t2i-finetuning-records)."),
    image_column: Optional[str] = ImageColumnOption,
    caption_column: Optional[str] = CaptionColumnOption,
    split: Optional[str] = SplitOption,
    json_out: bool = JsonOption,
):
    """LoRA fine-tune a pipeline on a dataset, score it (FID/KID/CMMD before and after), record the result."""
    from hubselect.finetune.run import finetune as run_finetune
    from hubselect.finetune.trainer import FinetuneConfig

    config = FinetuneConfig(model=model, dataset=dataset, steps=steps, batch_size=batch_size, lr=lr, rank=rank,
                            seed=seed, resolution=resolution, val_size=val_size, max_samples=max_samples,
                            sample_steps=sample_steps, guidance_scale=guidance_scale, probe=probe,
                            mixed_precision=mixed_precision, gradient_checkpointing=gradient_checkpointing,
                            image_column=image_column, caption_column=caption_column, split=split)
    bar = _progress_bar("finetune", "step")
    sampling = {"before": _progress_bar("sample (pretrained)", "img"),
                "after": _progress_bar("sample (fine-tuned)", "img")}
    out = run_finetune(config, zoo=zoo, push=push, adapter_repo=adapter_repo, edges_repo=edges_repo,
                       run_dir=output, checkpoint_every=checkpoint_every,
                       progress=lambda done, total, loss: bar(done, total, f"loss {loss:.4f}"),
                       sample_progress=lambda when, done, total: sampling[when](done, total, None))
    if json_out:
        _echo_json(out)
        return
    rec = out["record"]
    typer.echo(f"{rec['model']} on {rec['dataset']}: {rec['metric']} {rec['initial_score']:.4f} -> "
               f"{rec['score']:.4f} after {rec['steps']} steps "
               f"(KID {out['initial_scores']['kid']:.5f} -> {out['scores']['kid']:.5f}, "
               f"CMMD {out['initial_scores']['cmmd']:.4f} -> {out['scores']['cmmd']:.4f})")
    if out["resumed_from"]:
        typer.echo(f"resumed from step {out['resumed_from']}")
    typer.echo(f"adapter: {out['adapter_dir']}; record {out['record_id'][:12]} in {out['zoo']}")
    if push:
        typer.echo(f"pushed: adapter to {out['adapter_repo']}, record to {out['edges_repo']}")


@app.command()
def sweep(
    models: Optional[list[str]] = typer.Option(
        None, "--models", help="Hub model IDs or pipeline folders (comma-separated or repeated)."),
    datasets: Optional[list[str]] = typer.Option(
        None, "--datasets", help="Hub dataset IDs or captioned image folders (comma-separated or repeated)."),
    backend: str = typer.Option("local", "--backend", help="local (this machine) or hf-jobs (Hugging Face Jobs)."),
    suggest_k: Optional[int] = typer.Option(
        None, "--suggest", min=1, metavar="K",
        help="List the K pending pairs whose results would most reduce the ranking's uncertainty "
             "(default candidates: the zoo's models and datasets); add --run to run them."),
    run: bool = typer.Option(False, "--run", help="With --suggest: run the suggested pairs on --backend."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the pending pairs (and Jobs); run nothing."),
    steps: int = typer.Option(10_000, "--steps", help="Training steps per pair (paper: 10 000)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Global batch size (paper: 8)."),
    lr: float = typer.Option(1e-5, "--lr", help="AdamW learning rate, constant (paper: 1e-5)."),
    rank: int = typer.Option(4, "--rank", help="LoRA rank."),
    seed: int = typer.Option(0, "--seed", help="Seed of every run (and of the --suggest ensemble)."),
    resolution: Optional[int] = typer.Option(None, "--resolution", help="Training and sampling size in pixels."),
    val_size: int = typer.Option(256, "--val-size", help="Validation images per dataset."),
    max_samples: int = typer.Option(10_000, "--max-samples", help="At most this many items per dataset."),
    sample_steps: int = typer.Option(30, "--sample-steps", help="Denoising steps per validation image."),
    mixed_precision: str = typer.Option("no", "--mixed-precision", help="no, fp16 or bf16."),
    zoo: Optional[Path] = ZooOption,
    edges_repo: Optional[str] = typer.Option(None, "--edges-repo",
                                             help="Edge dataset repo (default: $HUBSELECT_EDGES_REPO or "
                                                  "hubselect/t2i-finetuning-records)."),
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
    from hubselect.sweep import pairs as sweeps

    settings = dict(steps=steps, batch_size=batch_size, lr=lr, rank=rank, seed=seed, resolution=resolution,
                    val_size=val_size, max_samples=max_samples, sample_steps=sample_steps,
                    mixed_precision=mixed_precision)
    if backend not in sweeps.BACKENDS:
        raise UserError(f"unknown --backend {backend!r}: local or hf-jobs")
    if run and suggest_k is None:
        raise UserError("--run goes with --suggest K (a plain sweep runs its pending pairs)")
    suggested = None
    pairs = None
    if suggest_k is not None:
        suggested = sweeps.suggest(suggest_k, zoo=zoo, models=models, datasets=datasets, edges_repo=edges_repo,
                                   ensemble=ensemble, seed=seed)
        if not run:
            _print_suggestions(suggested, json_out)
            return
        pairs = sweeps.suggested_pairs(suggested)
    elif not models or not datasets:
        raise UserError("sweep needs --models and --datasets (or --suggest K)")
    report = sweeps.sweep(models or [], datasets or [], backend=backend, zoo=zoo, settings=settings,
                          edges_repo=edges_repo, pairs=pairs, dry_run=dry_run, wait=wait,
                          poll_interval=poll_interval, image=image or sweeps.JOB_IMAGE, flavor=flavor,
                          timeout=timeout, namespace=namespace, install=install,
                          progress=_progress_bar("sweep", "run" if backend == "local" else "job"),
                          wait_progress=_progress_bar("wait", "job"))
    if json_out:
        _echo_json({"suggest": suggested, **report} if suggested else report)
    else:
        if suggested:
            _print_suggestions(suggested, False)
        _print_sweep(report)
    if report["failed"]:
        raise typer.Exit(1)


def _print_suggestions(result: dict, json_out: bool) -> None:
    if json_out:
        _echo_json(result)
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


@app.command("zoo")
def zoo_list(zoo: Optional[Path] = ZooOption, json_out: bool = JsonOption):
    """List the zoo's models: parameters, TFLOPs per image, license, fine-tuning records."""
    from hubselect.zoo.format import Zoo
    from hubselect.zoo.listing import list_models

    rows = list_models(Zoo.open(zoo))
    if json_out:
        _echo_json(rows)
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


@app.command()
def profile(
    dataset: str = typer.Argument(..., metavar="DATASET", help="A Hub dataset ID or a local image folder."),
    probe: Optional[str] = typer.Option(None, "--probe",
                                        help="clip, efficientnet (offline) or minilm (captions, offline). "
                                             "Default: the zoo's probe, else clip."),
    name: Optional[str] = typer.Option(None, "--name",
                                       help="The dataset's name in the zoo "
                                            "(default: the Hub ID or the folder's name)."),
    n: int = typer.Option(1000, "--n", min=2, help="How many images (captions) to sample."),
    image_column: Optional[str] = ImageColumnOption,
    caption_column: Optional[str] = CaptionColumnOption,
    split: Optional[str] = SplitOption,
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    zoo: Optional[Path] = ZooOption,
    json_out: bool = JsonOption,
):
    """Profile a Hub dataset or a local image folder into the zoo (probe embeddings: mean, covariance)."""
    from hubselect.profile.profiles import profile_dataset
    from hubselect.zoo.staging import add_profile_staged
    from hubselect.zoo.format import Zoo, default_zoo_dir

    zoo_dir = Path(zoo) if zoo is not None else default_zoo_dir()
    if probe is None:   # nothing is created before the profile exists: bad input leaves no trace
        probe = (Zoo.open(zoo_dir).info.probe if (zoo_dir / "zoo.json").is_file() else None) or "clip"
    result = profile_dataset(dataset, probe=probe, n=n, image_column=image_column, caption_column=caption_column,
                             split=split, name=name, seed=seed, progress=_progress_bar("profile", "img"))
    if zoo is None:     # no --zoo: the user's zoo (made from the shipped one), never the shipped zoo itself
        zoo_dir = default_zoo_dir(write=True)
    written = add_profile_staged(zoo_dir, result)      # profile, datasets row, distances: all or nothing
    if json_out:
        _echo_json({**result.summary(), "zoo": str(zoo_dir), "profile_path": written["profile"],
                    "distances": written["distances"]})
        return
    skipped = ", ".join(f"{k} {v}" for k, v in result.skipped.items())
    typer.echo(f"profiled {result.dataset} with {result.probe}: {result.n_samples} "
               f"{'captions' if result.modality == 'text' else 'images'}, dim {result.dim}"
               + (f", skipped {skipped}" if skipped else "")
               + (f", revision {result.revision[:12]}" if result.revision else ""))
    nearest = sorted(written["distances"].items(), key=lambda kv: kv[1])[:5]
    typer.echo(f"wrote {written['profile']}; distances to {len(written['distances'])} other datasets"
               + (" (nearest: " + ", ".join(f"{d} {v:.4g}" for d, v in nearest) + ")" if nearest else ""))


def _billions(n) -> str:
    return "-" if n is None else f"{n / 1e9:.2f} B"


@app.command("register-hf-extension")
def register_hf_extension(
    remove: bool = typer.Option(False, "--remove", help="Unregister instead."),
    force: bool = typer.Option(False, "--force", help="Replace another hf-hubselect registration."),
):
    """Make `hf hubselect ...` run this installation (an hf CLI extension; nothing is downloaded)."""
    from hubselect.cli import hf_extension

    if remove:
        removed = hf_extension.unregister()
        typer.echo("hf hubselect: unregistered" if removed else "hf hubselect was not registered")
        return
    manifest = hf_extension.register(force=force)
    typer.echo(f"registered: `hf hubselect ...` now runs {hf_extension.find_executable()} ({manifest})")


def quiet_libraries(prog: str) -> None:
    """Log our warnings as ``prog: message`` and silence the libraries' own advice."""
    logging.basicConfig(level=logging.WARNING, format=f"{prog}: %(message)s")
    # Library advice (convergence, deprecations) is for developers, not for a ranking's reader.
    import warnings
    for module in ("sklearn", "catboost", "xgboost", "datasets", "transformers", "diffusers", "torch"):
        warnings.filterwarnings("ignore", module=module)
    # huggingface_hub resets its logger's level when imported: import it first, then quiet it.
    # Its retry warnings would repeat what our own retry layer reports.
    from huggingface_hub.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    for noisy in ("httpx", "httpx2", "diffusers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def main(prog_name: str = "hubselect") -> None:
    """Entry point: run the app, turning every user-facing failure into one line and exit 2."""
    quiet_libraries("hubselect")
    command = typer.main.get_command(app)
    try:
        command.main(prog_name=prog_name, standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("hubselect: aborted", err=True)
        sys.exit(130)
    except click_exceptions.ClickException as exc:   # usage errors: bad option, missing argument, bad value
        if type(exc).__name__ == "NoArgsIsHelpError":   # bare `hubselect`: show the help
            typer.echo(exc.format_message())
            sys.exit(0)
        typer.echo(f"hubselect: error: {exc.format_message()}", err=True)
        sys.exit(2)
    except UserError as exc:
        typer.echo(f"hubselect: error: {exc}", err=True)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)


def hf_main() -> None:
    """The ``hf-hubselect`` console script: the same commands, run by ``hf hubselect ...``."""
    main(prog_name="hf hubselect")


if __name__ == "__main__":
    main()
