"""Parameter and FLOP counting on the meta device, checked against real tiny models."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from hubselect.crawlers import meta
from hubselect.crawlers.crawl import LocalRepo, describe_repo
from tests.tiny_pipelines import FAMILIES, checkpoint_numel, write_pipeline


def _random_like(x):
    if isinstance(x, torch.Tensor):
        return torch.rand(x.shape)
    if isinstance(x, dict):
        return {k: _random_like(v) for k, v in x.items()}
    return x


@pytest.fixture(scope="module")
def tiny_pipelines(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    out = {}
    for family, build in FAMILIES.items():
        comps, index = build()
        out[family] = (write_pipeline(root / f"acme-{family}", comps, index), comps)
    return out


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_params_equal_checkpoint_tensors(tiny_pipelines, family):
    folder, comps = tiny_pipelines[family]
    repo = LocalRepo(folder)
    repo.load_meta()
    record = describe_repo(repo)
    counted = [n for n, c in record["components"].items() if c["status"] == "counted"]
    for name, component in comps.items():
        if not isinstance(component, torch.nn.Module):
            continue   # tokenizers and the scheduler store no tensors
        if name not in counted:   # Kolors' ChatGLM lives outside diffusers/transformers
            assert record["components"][name]["status"] == "unresolvable", name
            continue
        assert record["components"][name]["params"] == checkpoint_numel(folder / name), name
    denoiser = "unet" if "unet" in comps else "transformer"
    assert record["params_denoiser"] == checkpoint_numel(folder / denoiser)
    assert record["params_total"] == sum(checkpoint_numel(folder / n) for n in counted)


def test_sd3_persistent_pos_embed_is_counted(tiny_pipelines):
    folder, comps = tiny_pipelines["sd3"]
    transformer = comps["transformer"]
    buffer = transformer.pos_embed.pos_embed
    assert buffer.numel() > 0
    n_params = sum(p.numel() for p in transformer.parameters())
    module = meta.build_on_meta("diffusers", "SD3Transformer2DModel", dict(transformer.config))
    assert meta.count_stored_tensors(module) == n_params + buffer.numel()


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_meta_flops_equal_real_forward(tiny_pipelines, family):
    """FLOPs counted on meta tensors equal those of a real CPU forward (math attention)."""
    _, comps = tiny_pipelines[family]
    den = comps.get("unet") or comps.get("transformer")
    geometry = meta.DenoiserGeometry(latent_size=16, text_tokens=20)
    meta_module = meta.build_on_meta("diffusers", type(den).__name__, dict(den.config))
    on_meta = meta.denoiser_forward_flops(meta_module, geometry)
    real_inputs = _random_like(meta.denoiser_inputs(den, geometry))
    with sdpa_kernel(SDPBackend.MATH):
        on_cpu = meta.count_flops(den, **real_inputs)
    assert on_meta == on_cpu > 0


def test_sampling_flops_compose(tiny_pipelines):
    folder, _ = tiny_pipelines["sd"]
    repo = LocalRepo(folder)
    repo.load_meta()
    rec = describe_repo(repo)
    s, f = rec["sampling"], rec["flops"]
    assert s["cfg_factor"] == 2 and s["num_inference_steps"] == 50   # StableDiffusionPipeline defaults
    assert f["per_image"] == f["denoiser_forward"] * 50 * 2 + f["vae_decode"]
    assert f["complete"] is True


def test_guidance_distilled_denoiser_runs_once_per_step(tiny_pipelines):
    folder, _ = tiny_pipelines["flux"]
    repo = LocalRepo(folder)
    repo.load_meta()
    assert describe_repo(repo)["sampling"]["cfg_factor"] == 1


def test_class_outside_diffusers_and_transformers_is_not_imported():
    with pytest.raises(meta.UnresolvableClass):
        meta.build_on_meta("kolors", "ChatGLMModel", {})
    with pytest.raises(meta.UnresolvableClass):
        meta.build_on_meta("diffusers", "NoSuchModel", {})
