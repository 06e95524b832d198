"""Hub repos that are not themselves loadable diffusers pipelines, and where a loadable one lives.

Most text-to-image repos on the Hub are diffusers pipelines: ``DiffusionPipeline.from_pretrained(repo)``
loads them. A few that people rank and fine-tune are not:

* a *transformer-only* repo holds one component (``transformer/``) and no ``model_index.json``; its
  publisher names the base pipeline repo that supplies the VAE, text encoder, tokenizer and
  scheduler, and diffusers loads it as ``Pipeline.from_pretrained(base, transformer=<this repo's
  transformer>)``;
* a repo in its publisher's *original layout* (custom text-encoder code, a ``model_index.json`` that
  names a class it is not) has a ``-diffusers`` twin with the same weights.

:data:`LOADABLE` lists them, each with the publisher's or diffusers' own words as its source. The
crawler records these facts in the zoo (``pipeline_class``, ``loadable_repo``,
``loadable_components``, ``loadable_source``); ``rank --download`` and ``finetune --model`` load the
counterpart through :func:`loadable_counterpart`. A repo that is not listed is its own pipeline.
:func:`download_top` fetches a ranking's top pipeline (``rank --download``, the scheduled refresh).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Loadable:
    """How to get a loadable diffusers pipeline for a repo that is not one itself."""

    pipeline_class: str                  # the pipeline the repo's weights belong to
    repo: str                            # the diffusers pipeline repo to load
    components: tuple[str, ...] = ()     # components taken from the listed repo itself, replacing repo's
    source: str = ""                     # where the publisher or diffusers says so

    def to_dict(self) -> dict:
        return {"pipeline_class": self.pipeline_class, "loadable_repo": self.repo,
                "loadable_components": list(self.components), "loadable_source": self.source}


LOADABLE: dict[str, Loadable] = {
    # 512-MS holds transformer/ only (README, assets, transformer config and weights: its Hub snapshot
    # manifest, tests/hub_fixtures/models/PROVENANCE.md #4). The PixArt-Σ authors load a checkpoint's
    # transformer into the shared T5 + SDXL-VAE pipeline repo.
    "PixArt-alpha/PixArt-Sigma-XL-2-512-MS": Loadable(
        pipeline_class="PixArtSigmaPipeline",
        repo="PixArt-alpha/pixart_sigma_sdxlvae_T5_diffusers",
        components=("transformer",),
        source="PixArt-alpha/PixArt-sigma README.md (@815fcc07), 'Integration in diffusers': "
               "Transformer2DModel.from_pretrained(<checkpoint>, subfolder='transformer') into "
               "PixArtSigmaPipeline.from_pretrained('PixArt-alpha/pixart_sigma_sdxlvae_T5_diffusers', "
               "transformer=...)"),
    # The original Kolors repo's model_index.json names StableDiffusionXLPipeline with a ChatGLM text
    # encoder from the `kolors` package (custom code); diffusers' KolorsPipeline loads the twin repo.
    "Kwai-Kolors/Kolors": Loadable(
        pipeline_class="KolorsPipeline",
        repo="Kwai-Kolors/Kolors-diffusers",
        source="Kwai-Kolors/Kolors README.md (@49f3e177): 'Kolors is now available in Diffusers', "
               "KolorsPipeline.from_pretrained('Kwai-Kolors/Kolors-diffusers'); diffusers' KolorsPipeline "
               "docs name the same repo"),
}


def loadable_counterpart(model: str) -> Loadable | None:
    """The loadable counterpart of a Hub repo ID, or None when the repo is its own pipeline."""
    return LOADABLE.get(model)


def download_loadable_pipeline(repo_id: str, local_dir: str | Path, variant: str | None = None,
                               client=None) -> list[str]:
    """:meth:`HubClient.download_pipeline` for any ranked repo, into one folder that diffusers loads.

    A repo that is not itself a loadable pipeline (a transformer-only repo, a publisher's original
    layout) is assembled from its loadable counterpart, with the components the repo supplies itself
    in place of the counterpart's (PixArt-Σ 512-MS: its transformer in the T5 + SDXL-VAE pipeline, as
    ``Pipeline.from_pretrained(base, transformer=...)`` loads it). Returns the folder's files (relative paths).
    """
    from hubselect.hub import HubClient

    client = client or HubClient()
    target = loadable_counterpart(repo_id)
    if target is None:
        return client.download_pipeline(repo_id, local_dir, variant=variant)
    own = set(target.components)
    files = client.download_pipeline(target.repo, local_dir, variant=variant, skip=own)
    if own:
        files += client.download_pipeline(repo_id, local_dir, variant=variant, only=own)
    log.info("%s is not a diffusers pipeline itself: loaded as %s from %s%s", repo_id, target.pipeline_class,
             target.repo, f" with its own {', '.join(sorted(own))}" if own else "")
    return sorted(set(files))


def top_hub_model(ranking):
    """The best-ranked model of ``ranking`` that is a Hub repo ID (a local folder cannot be downloaded).

    Raises UserError when no ranked model is one.
    """
    from hubselect.errors import UserError
    from hubselect.hub import is_repo_id

    for ranked in ranking.models:
        if is_repo_id(ranked.model):
            return ranked
    raise UserError("no ranked model is a Hub repo ID: nothing to download")


def download_top(ranking, directory: Path, variant: str | None = None, client=None) -> dict:
    """Download the top Hub pipeline of ``ranking`` into ``directory`` (safetensors and configs only).

    A repo that is not a loadable pipeline itself comes with its counterpart
    (:func:`download_loadable_pipeline`). Returns ``{"model", "path", "files"}``; a failed download is a UserError.
    """
    from hubselect.errors import HubError, UserError, hub_user_error

    top = top_hub_model(ranking).model
    try:
        files = download_loadable_pipeline(top, directory, variant=variant, client=client)
    except HubError as exc:
        raise UserError(f"download failed: {hub_user_error(exc, f'model {top}')}") from None
    return {"model": top, "path": str(directory), "files": files}
