"""From rank to fine-tune for repos that are not loadable pipelines themselves (hubselect.rank.loadable).

Tiny stand-ins on the local Hub endpoint, under the real repo IDs:

* ``PixArt-alpha/PixArt-Sigma-XL-2-512-MS``: a transformer-only repo (``transformer/`` with the legacy
  ``Transformer2DModel`` class name, as on the Hub, and the fixture card), beside its base pipeline
  ``PixArt-alpha/pixart_sigma_sdxlvae_T5_diffusers``, whose own transformer has other weights;
* ``Kwai-Kolors/Kolors``: the original layout (the real repo's model_index.json, which names
  StableDiffusionXLPipeline), beside ``Kwai-Kolors/Kolors-diffusers`` (a KolorsPipeline).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hubselect.crawlers.crawl import crawl
from hubselect.errors import UserError
from hubselect.finetune.trainer import load_pipeline, resolve_model
from hubselect.hub import HubClient
from hubselect.rank.loadable import LOADABLE, download_loadable_pipeline, download_top, loadable_counterpart
from hubselect.zoo.format import Zoo
from tests.conftest import HUB_FIXTURES
from tests.tiny_pipelines import build_pipeline

PIXART = "PixArt-alpha/PixArt-Sigma-XL-2-512-MS"
PIXART_BASE = "PixArt-alpha/pixart_sigma_sdxlvae_T5_diffusers"
KOLORS = "Kwai-Kolors/Kolors"
KOLORS_DIFFUSERS = "Kwai-Kolors/Kolors-diffusers"
WEIGHTS = "diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """The tiny PixArt-Σ and Kolors pipelines, and a PixArt transformer with other weights."""
    root = tmp_path_factory.mktemp("tiny")
    out = {"pixart": build_pipeline("pixart", root / "pixart"), "kolors": build_pipeline("kolors", root / "kolors")}
    from diffusers import PixArtTransformer2DModel
    own = PixArtTransformer2DModel.from_pretrained(out["pixart"] / "transformer")
    with torch.no_grad():
        for p in own.parameters():
            p.add_(0.5)
    own.save_pretrained(root / "own" / "transformer")
    config = root / "own" / "transformer" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "_class_name": "Transformer2DModel"}))
    out["own"] = root / "own"
    return out


@pytest.fixture
def standins(tiny, hub_server, hub_root):
    models = hub_root / "models"
    shutil.copytree(tiny["pixart"], models / PIXART_BASE)
    shutil.copytree(tiny["own"], models / PIXART)
    shutil.copy(HUB_FIXTURES / "models" / PIXART / "README.md", models / PIXART / "README.md")
    shutil.copytree(tiny["kolors"], models / KOLORS_DIFFUSERS)
    shutil.copytree(tiny["kolors"], models / KOLORS)
    shutil.copy(HUB_FIXTURES / "models" / KOLORS / "model_index.json", models / KOLORS / "model_index.json")
    return hub_server


def test_the_mapping_names_its_sources():
    assert set(LOADABLE) == {PIXART, KOLORS}
    for repo, target in LOADABLE.items():
        assert target.source and target.repo != repo and target.pipeline_class.endswith("Pipeline")
    assert loadable_counterpart("stabilityai/stable-diffusion-xl-base-1.0") is None


def test_transformer_only_pixart_loads_its_own_transformer_into_the_base_pipeline(standins, tiny):
    resolved = resolve_model(PIXART)
    assert (resolved.name, resolved.family.name, resolved.loadable.repo) == (PIXART, "pixart", PIXART_BASE)
    assert resolved.sha == standins.repo_sha(PIXART) and resolved.loadable_sha == standins.repo_sha(PIXART_BASE)
    pipe = load_pipeline(resolved)
    assert type(pipe).__name__ == "PixArtSigmaPipeline"
    own = load_file(str(tiny["own"] / "transformer" / WEIGHTS))
    base = load_file(str(tiny["pixart"] / "transformer" / WEIGHTS))
    loaded = pipe.transformer.state_dict()
    assert all(torch.equal(loaded[k], own[k]) for k in own)
    assert not all(torch.equal(loaded[k], base[k]) for k in base)
    # the rest is the base pipeline's
    vae = load_file(str(tiny["pixart"] / "vae" / WEIGHTS))
    assert all(torch.equal(pipe.vae.state_dict()[k], vae[k]) for k in vae)


def test_original_kolors_layout_loads_as_kolors_diffusers(standins):
    resolved = resolve_model(KOLORS)
    assert (resolved.name, resolved.family.name, resolved.loadable.repo) == (KOLORS, "kolors", KOLORS_DIFFUSERS)
    assert resolved.model_index["_class_name"] == "KolorsPipeline"
    assert type(load_pipeline(resolved)).__name__ == "KolorsPipeline"


def test_download_assembles_one_loadable_folder(standins, tiny, tmp_path):
    from diffusers import DiffusionPipeline

    client = HubClient(retries=0)
    files = download_loadable_pipeline(PIXART, tmp_path / "pixart", client=client)
    assert "model_index.json" in files and f"transformer/{WEIGHTS}" in files and f"vae/{WEIGHTS}" in files
    got = (tmp_path / "pixart" / "transformer" / WEIGHTS).read_bytes()
    assert got == (tiny["own"] / "transformer" / WEIGHTS).read_bytes()
    assert type(DiffusionPipeline.from_pretrained(str(tmp_path / "pixart"))).__name__ == "PixArtSigmaPipeline"

    download_loadable_pipeline(KOLORS, tmp_path / "kolors", client=client)
    index = json.loads((tmp_path / "kolors" / "model_index.json").read_text())
    assert index["_class_name"] == "KolorsPipeline"
    # a repo that is its own pipeline downloads as before
    assert download_loadable_pipeline(PIXART_BASE, tmp_path / "base", client=client) == \
        client.download_pipeline(PIXART_BASE, tmp_path / "base2")


def test_download_top_fetches_the_best_ranked_hub_repo(standins, tiny, tmp_path):
    from types import SimpleNamespace

    def ranking(*models):
        return SimpleNamespace(models=[SimpleNamespace(model=m) for m in models])

    # a local folder ranked first cannot be downloaded: the first Hub repo ID is the top pipeline
    got = download_top(ranking(str(tmp_path / "local-pipeline"), PIXART, KOLORS), tmp_path / "top",
                       client=HubClient(retries=0))
    assert got["model"] == PIXART and got["path"] == str(tmp_path / "top") and f"transformer/{WEIGHTS}" in got["files"]
    assert (tmp_path / "top" / "transformer" / WEIGHTS).read_bytes() == \
        (tiny["own"] / "transformer" / WEIGHTS).read_bytes()
    with pytest.raises(UserError, match="no ranked model is a Hub repo ID"):
        download_top(ranking(str(tmp_path)), tmp_path / "none")
    with pytest.raises(UserError, match="model someone/missing not found on the Hub"):
        download_top(ranking("someone/missing"), tmp_path / "missing", client=HubClient(retries=0))


def test_unlisted_transformer_only_repo_is_still_refused(standins, hub_root):
    shutil.copytree(hub_root / "models" / PIXART, hub_root / "models" / "someone" / "transformer-only")
    with pytest.raises(UserError, match="not a diffusers pipeline repo"):
        resolve_model("someone/transformer-only")


def test_missing_counterpart_is_one_clear_error(standins, hub_root):
    shutil.rmtree(hub_root / "models" / PIXART_BASE)
    with pytest.raises(UserError, match=f"model {PIXART_BASE} not found on the Hub"):
        resolve_model(PIXART)


def test_crawl_records_the_class_and_the_loadable_counterpart(standins, tmp_path):
    zoo = Zoo.open(tmp_path / "zoo", create=True)
    summary = crawl([PIXART, PIXART_BASE, KOLORS, KOLORS_DIFFUSERS], zoo, client=HubClient(retries=0))
    assert summary.skipped == {}
    info = zoo.read_table("model_info").set_index("model")
    assert info.loc[PIXART, "pipeline_class"] == info.loc[PIXART_BASE, "pipeline_class"] == "PixArtSigmaPipeline"
    assert info.loc[KOLORS, "pipeline_class"] == info.loc[KOLORS_DIFFUSERS, "pipeline_class"] == "KolorsPipeline"
    assert (info.loc[PIXART, "loadable_repo"], info.loc[PIXART, "loadable_components"]) == (PIXART_BASE, "transformer")
    assert info.loc[KOLORS, "loadable_repo"] == KOLORS_DIFFUSERS
    assert "PixArt-sigma" in info.loc[PIXART, "loadable_source"] and "Kolors" in info.loc[KOLORS, "loadable_source"]
    for own in (PIXART_BASE, KOLORS_DIFFUSERS):
        assert info.loc[own, "loadable_repo"] != info.loc[own, "loadable_repo"]     # NaN: its own pipeline
    # the same sampling recipe (text length, steps) as the pipelines that load them
    for repo, twin in ((PIXART, PIXART_BASE), (KOLORS, KOLORS_DIFFUSERS)):
        a = json.loads((zoo.path / "crawl" / (repo.replace("/", "--") + ".json")).read_text())
        b = json.loads((zoo.path / "crawl" / (twin.replace("/", "--") + ".json")).read_text())
        assert a["sampling"]["text_tokens"] == b["sampling"]["text_tokens"]
        assert a["sampling"]["num_inference_steps"] == b["sampling"]["num_inference_steps"]
