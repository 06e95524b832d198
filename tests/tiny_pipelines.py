"""Tiny text-to-image pipelines for tests: real diffusers/transformers classes, scaled-down real
configs, random weights, written with save_pretrained (so the folder holds real safetensors).

Each builder returns ``{component: module}`` plus a model_index; :func:`write_pipeline` lays it
out as a Hub repo / save_pretrained folder would.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

CLIP_TEXT = dict(vocab_size=1000, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                 num_attention_heads=4, max_position_embeddings=77, projection_dim=32)
T5_TEXT = dict(vocab_size=1000, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
               relative_attention_num_buckets=8)
TINY_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[8, 16],
                down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                layers_per_block=1, norm_num_groups=8, sample_size=32)


def _clip(with_projection: bool = False, **overrides):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    return cls(CLIPTextConfig(**{**CLIP_TEXT, **overrides}))


def _t5(**overrides):
    from transformers import T5Config, T5EncoderModel
    return T5EncoderModel(T5Config(**{**T5_TEXT, **overrides}))


def _vae(latent_channels: int = 4):
    from diffusers import AutoencoderKL
    return AutoencoderKL(**{**TINY_VAE, "latent_channels": latent_channels})


def sd_unet_pipeline() -> tuple[dict, dict]:
    """SD 1.x layout: one CLIP text encoder, a cross-attention UNet, a KL VAE."""
    from diffusers import UNet2DConditionModel
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8)
    comps = {"unet": unet, "vae": _vae(), "text_encoder": _clip()}
    index = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "PNDMScheduler"],
             "safety_checker": [None, None], "feature_extractor": [None, None]}
    return comps, index


def sdxl_unet_pipeline() -> tuple[dict, dict]:
    """SDXL layout: two CLIP encoders, UNet with added time ids (text_time conditioning)."""
    from diffusers import UNet2DConditionModel
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64, attention_head_dim=(2, 4), transformer_layers_per_block=(1, 2),
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32, use_linear_projection=True, norm_num_groups=8)
    comps = {"unet": unet, "vae": _vae(), "text_encoder": _clip(),
             "text_encoder_2": _clip(with_projection=True)}
    index = {"_class_name": "StableDiffusionXLPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
             "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
             "scheduler": ["diffusers", "EulerDiscreteScheduler"]}
    return comps, index


def sd3_pipeline() -> tuple[dict, dict]:
    """SD3 layout: MMDiT transformer (persistent pos-embed buffer) and three text encoders."""
    from diffusers import SD3Transformer2DModel
    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=2, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=32, caption_projection_dim=16, pooled_projection_dim=64,
        pos_embed_max_size=24)
    comps = {"transformer": transformer, "vae": _vae(), "text_encoder": _clip(with_projection=True),
             "text_encoder_2": _clip(with_projection=True), "text_encoder_3": _t5()}
    index = {"_class_name": "StableDiffusion3Pipeline",
             "transformer": ["diffusers", "SD3Transformer2DModel"], "vae": ["diffusers", "AutoencoderKL"],
             "text_encoder": ["transformers", "CLIPTextModelWithProjection"],
             "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
             "text_encoder_3": ["transformers", "T5EncoderModel"],
             "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"]}
    return comps, index


def flux_pipeline() -> tuple[dict, dict]:
    """Flux layout: packed-token transformer with guidance embedding, CLIP + T5."""
    from diffusers import FluxTransformer2DModel
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
        axes_dims_rope=(2, 2, 4))
    comps = {"transformer": transformer, "vae": _vae(), "text_encoder": _clip(), "text_encoder_2": _t5()}
    index = {"_class_name": "FluxPipeline", "transformer": ["diffusers", "FluxTransformer2DModel"],
             "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
             "text_encoder_2": ["transformers", "T5EncoderModel"],
             "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"]}
    return comps, index


FAMILIES = {"sd": sd_unet_pipeline, "sdxl": sdxl_unet_pipeline, "sd3": sd3_pipeline, "flux": flux_pipeline}


def write_pipeline(folder: Path, comps: dict, index: dict, card: str | None = None,
                   scheduler_config: dict | None = None) -> Path:
    """Save components with save_pretrained (safetensors) and write model_index.json."""
    torch.manual_seed(0)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, module in comps.items():
        module.save_pretrained(folder / name)
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    sched = scheduler_config or {"_class_name": index.get("scheduler", [None, "DDIMScheduler"])[1],
                                 "num_train_timesteps": 1000}
    (folder / "scheduler").mkdir(exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(sched))
    if card is not None:
        (folder / "README.md").write_text(card)
    return folder


def checkpoint_numel(folder: Path) -> int:
    """Elements stored in a component folder's safetensors files (what the Hub would hold)."""
    from safetensors import safe_open
    total = 0
    for f in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():
                total += st.get_slice(key).get_shape().numel() if hasattr(st.get_slice(key).get_shape(), "numel") \
                    else int(torch.Size(st.get_slice(key).get_shape()).numel())
    return total
