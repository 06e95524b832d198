"""``hubselect profile``: a dataset's probe embeddings (mean, covariance) into the zoo."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from hubselect.cli.options import (CaptionColumnOption, ImageColumnOption, JsonOption, RegistryCommand,
                                   SplitOption, ZooOption, probe_option)
from hubselect.cli.root import echo_json, progress_bar


def profile(
    dataset: str = typer.Argument(..., metavar="DATASET", help="A Hub dataset ID or a local image folder."),
    probe: Optional[str] = probe_option("Dataset probe"),
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
    from hubselect.profile.probes import resolve_probe
    from hubselect.profile.profiles import profile_dataset
    from hubselect.zoo.format import Zoo, default_zoo_dir
    from hubselect.profile.profiles import add_profile_staged

    zoo_dir = Path(zoo) if zoo is not None else default_zoo_dir()
    zoo_probe = None    # nothing is created before the profile exists: bad input leaves no trace
    if probe is None and (zoo_dir / "zoo.json").is_file():
        zoo_probe = Zoo.open(zoo_dir).info.probe
    probe = resolve_probe(probe, zoo_probe)
    result = profile_dataset(dataset, probe=probe, n=n, image_column=image_column, caption_column=caption_column,
                             split=split, name=name, seed=seed, progress=progress_bar("profile", "img"))
    if zoo is None:     # no --zoo: the user's zoo (made from the shipped one), never the shipped zoo itself
        zoo_dir = default_zoo_dir(write=True)
    written = add_profile_staged(zoo_dir, result)      # profile, datasets row, distances: all or nothing
    if json_out:
        echo_json({**result.summary(), "zoo": str(zoo_dir), "profile_path": written["profile"],
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


def register(app: typer.Typer) -> None:
    app.command(cls=RegistryCommand)(profile)
