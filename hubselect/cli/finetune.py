"""``hubselect finetune``: LoRA fine-tune one pipeline on one dataset, score it, record the result."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hubselect.cli.options import (CaptionColumnOption, EdgesRepoOption, ImageColumnOption, JsonOption,
                                   SplitOption, TrainingCommand, ZooOption, probe_option, training_options)
from hubselect.cli.root import echo_json, progress_bar


@training_options("steps", "batch_size", "lr", "rank", "seed", "resolution", "val_size", "max_samples",
                  "sample_steps", "guidance_scale", "mixed_precision", "gradient_checkpointing")
def finetune(
    model: str = typer.Option(..., "--model", help="A Hub model repo ID or a local diffusers pipeline folder."),
    dataset: str = typer.Option(..., "--dataset", help="A Hub dataset ID or a local image folder with captions."),
    training: dict = None,
    zoo: Optional[Path] = ZooOption,
    push: bool = typer.Option(False, "--push", help="Publish the adapter and the record on the Hub."),
    probe: Optional[str] = probe_option("Probe for FID/KID/CMMD", "image_probes"),
    checkpoint_every: int = typer.Option(500, "--checkpoint-every", help="Save a resumable checkpoint every N steps."),
    output: Optional[Path] = typer.Option(None, "--output", file_okay=False,
                                          help="Run folder (default: "
                                               "$HF_HOME/hubselect/runs/<model>__<dataset>__<hash>;"
                                               " the same command resumes there)."),
    adapter_repo: Optional[str] = typer.Option(None, "--adapter-repo",
                                               help="Model repo for the adapter "
                                                    "(default: <user>/<model>-<dataset>-lora)."),
    edges_repo: Optional[str] = EdgesRepoOption,
    image_column: Optional[str] = ImageColumnOption,
    caption_column: Optional[str] = CaptionColumnOption,
    split: Optional[str] = SplitOption,
    json_out: bool = JsonOption,
):
    """LoRA fine-tune a pipeline on a dataset, score it (FID/KID/CMMD before and after), record the result."""
    from hubselect.finetune.run import finetune as run_finetune
    from hubselect.finetune.trainer import FinetuneConfig

    config = FinetuneConfig(model=model, dataset=dataset, probe=probe, image_column=image_column,
                            caption_column=caption_column, split=split, **training)
    bar = progress_bar("finetune", "step")
    sampling = {"before": progress_bar("sample (pretrained)", "img"),
                "after": progress_bar("sample (fine-tuned)", "img")}
    out = run_finetune(config, zoo=zoo, push=push, adapter_repo=adapter_repo, edges_repo=edges_repo,
                       run_dir=output, checkpoint_every=checkpoint_every,
                       progress=lambda done, total, loss: bar(done, total, f"loss {loss:.4f}"),
                       sample_progress=lambda when, done, total: sampling[when](done, total, None))
    if json_out:
        echo_json(out)
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


def register(app: typer.Typer) -> None:
    app.command(cls=TrainingCommand)(finetune)
