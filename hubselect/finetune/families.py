"""Every text-to-image family's training quirks, in one place.

A family says, for one kind of pipeline:

* which ``model_index.json`` classes belong to it (``pipeline_classes``), and where its denoiser is;
* how images become latents (``encode_images``: scaling and shift factors, Flux's 2x2 packing
  happens in ``predict``), and how captions become conditioning (``encode_captions``, through the
  pipeline's own ``encode_prompt`` so that tokenisation, clip-skip, attention masks and pooled
  embeddings are exactly what inference uses);
* the training objective: denoising diffusion (``epsilon`` or ``v_prediction``, read from the
  scheduler config) or rectified flow (``flow``: x_t = (1 - s) x0 + s noise, target noise - x0);
* how the denoiser is called (``predict``): SDXL-class UNets want ``added_cond_kwargs`` with
  pooled text embeddings and 6 "time ids", PixArt's transformer predicts a learned variance
  that training ignores, Flux takes packed tokens, positional ids, a guidance value and
  timesteps in [0, 1];
* which modules LoRA adapts (``lora_targets``: the attention projections, as diffusers' own
  LoRA training examples do).

============  ====================================  =========  =====================================
family        pipelines                             objective  conditioning
============  ====================================  =========  =====================================
``sd``        StableDiffusionPipeline (1.x, 2.x)    eps / v    CLIP hidden states
``sdxl``      StableDiffusionXLPipeline (SDXL,      eps / v    2 CLIP encoders + pooled + time ids
              Juggernaut X, Segmind Vega)
``kolors``    KolorsPipeline                        eps        ChatGLM hidden states + pooled + time ids
``sd3``       StableDiffusion3Pipeline (3, 3.5)     flow       2 CLIP + T5, pooled projections
``flux``      FluxPipeline                          flow       CLIP pooled + T5, guidance embedding
``pixart``    PixArtSigmaPipeline                   eps        T5 hidden states + attention mask
``sana``      SanaPipeline                          flow       Gemma hidden states + mask, DC-AE
============  ====================================  =========  =====================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from hubselect.errors import UserError

# Attention projections: the query/key/value/output linears of every attention block. The joint
# (MMDiT) blocks of SD3 and Flux also project the text stream through add_{q,k,v}_proj / to_add_out.
UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
MMDIT_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")


@dataclass(frozen=True)
class Family:
    """The base: a latent diffusion model with one denoiser; subclasses override what differs."""

    name: str
    pipeline_classes: tuple[str, ...]
    denoiser: str = "unet"                          # attribute of the pipeline holding the denoiser
    lora_targets: tuple[str, ...] = UNET_TARGETS
    max_sequence_length: int | None = None          # text length for T5/Gemma/ChatGLM encoders

    # -- objective -------------------------------------------------------------------------------
    def objective(self, pipe) -> str:
        """``epsilon`` or ``v_prediction`` (from the scheduler config), or ``flow``."""
        kind = dict(pipe.scheduler.config).get("prediction_type", "epsilon")
        if kind not in ("epsilon", "v_prediction"):
            raise UserError(f"{self.name}: unsupported prediction_type {kind!r} in the scheduler config")
        return kind

    # -- inputs ----------------------------------------------------------------------------------
    def encode_images(self, pipe, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Latents of images in [-1, 1]: a sample of the VAE posterior, shifted and scaled."""
        vae = pipe.vae
        dist = vae.encode(pixels.to(vae.dtype)).latent_dist
        noise = torch.randn(dist.mean.shape, generator=generator, dtype=torch.float32).to(dist.mean)
        latents = dist.mean + dist.std * noise
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return (latents - shift) * vae.config.scaling_factor

    def encode_captions(self, pipe, captions: list[str], device) -> dict[str, Any]:
        embeds, _ = pipe.encode_prompt(captions, device, 1, False)
        return {"encoder_hidden_states": embeds}

    # -- the denoiser ----------------------------------------------------------------------------
    def predict(self, pipe, denoiser, latents: torch.Tensor, timesteps: torch.Tensor,
                cond: dict[str, Any]) -> torch.Tensor:
        return denoiser(latents, timesteps, encoder_hidden_states=cond["encoder_hidden_states"],
                        return_dict=False)[0]

    # -- generation --------------------------------------------------------------------------------
    def sample_kwargs(self) -> dict[str, Any]:
        """Extra arguments for the pipeline's ``__call__`` when generating validation images."""
        return {"max_sequence_length": self.max_sequence_length} if self.max_sequence_length else {}


def _time_ids(height: int, width: int, batch: int, dtype, device) -> torch.Tensor:
    """SDXL micro-conditioning: (original size, crop top-left, target size); images are center-cropped
    to the training resolution, so original = target and the crop is (0, 0)."""
    ids = torch.tensor([height, width, 0, 0, height, width], dtype=dtype, device=device)
    return ids.repeat(batch, 1)


@dataclass(frozen=True)
class SDXLFamily(Family):
    def encode_captions(self, pipe, captions, device):
        embeds, _, pooled, _ = pipe.encode_prompt(captions, device=device, num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False)
        return {"encoder_hidden_states": embeds, "text_embeds": pooled}

    def predict(self, pipe, denoiser, latents, timesteps, cond):
        scale = pipe.vae_scale_factor
        ids = _time_ids(latents.shape[2] * scale, latents.shape[3] * scale, latents.shape[0],
                        cond["text_embeds"].dtype, latents.device)
        return denoiser(latents, timesteps, encoder_hidden_states=cond["encoder_hidden_states"],
                        added_cond_kwargs={"text_embeds": cond["text_embeds"], "time_ids": ids},
                        return_dict=False)[0]


@dataclass(frozen=True)
class KolorsFamily(SDXLFamily):
    """SDXL's UNet layout, but one ChatGLM text encoder (penultimate hidden states + pooled last token)."""

    max_sequence_length: int | None = 256

    def encode_captions(self, pipe, captions, device):
        embeds, _, pooled, _ = pipe.encode_prompt(captions, device=device, num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False,
                                                  max_sequence_length=self.max_sequence_length)
        return {"encoder_hidden_states": embeds, "text_embeds": pooled}


@dataclass(frozen=True)
class FlowFamily(Family):
    """Rectified-flow transformers: SD3/3.5, Flux, Sana."""

    denoiser: str = "transformer"
    lora_targets: tuple[str, ...] = MMDIT_TARGETS

    def objective(self, pipe) -> str:
        return "flow"


@dataclass(frozen=True)
class SD3Family(FlowFamily):
    max_sequence_length: int | None = 256

    def encode_captions(self, pipe, captions, device):
        embeds, _, pooled, _ = pipe.encode_prompt(captions, None, None, device=device, num_images_per_prompt=1,
                                                  do_classifier_free_guidance=False,
                                                  max_sequence_length=self.max_sequence_length)
        return {"encoder_hidden_states": embeds, "pooled_projections": pooled}

    def predict(self, pipe, denoiser, latents, timesteps, cond):
        return denoiser(hidden_states=latents, timestep=timesteps, encoder_hidden_states=cond["encoder_hidden_states"],
                        pooled_projections=cond["pooled_projections"], return_dict=False)[0]


@dataclass(frozen=True)
class FluxFamily(FlowFamily):
    """Latents are packed into 2x2 patches (tokens) with positional ids; the transformer takes
    timesteps in [0, 1] and, for guidance-distilled checkpoints (FLUX.1-dev), a guidance value."""

    max_sequence_length: int | None = 512
    guidance: float = 3.5                             # diffusers' Flux LoRA examples train at 3.5

    def encode_captions(self, pipe, captions, device):
        embeds, pooled, text_ids = pipe.encode_prompt(captions, None, device=device, num_images_per_prompt=1,
                                                      max_sequence_length=self.max_sequence_length)
        return {"encoder_hidden_states": embeds, "pooled_projections": pooled, "txt_ids": text_ids}

    def predict(self, pipe, denoiser, latents, timesteps, cond):
        b, c, h, w = latents.shape
        packed = pipe._pack_latents(latents, b, c, h, w)
        img_ids = pipe._prepare_latent_image_ids(b, h // 2, w // 2, latents.device, latents.dtype)
        guidance = None
        if pipe.transformer.config.guidance_embeds:      # denoiser may be a DDP wrapper
            guidance = torch.full((b,), self.guidance, device=latents.device, dtype=latents.dtype)
        out = denoiser(hidden_states=packed, timestep=timesteps / 1000, guidance=guidance,
                       pooled_projections=cond["pooled_projections"],
                       encoder_hidden_states=cond["encoder_hidden_states"], txt_ids=cond["txt_ids"],
                       img_ids=img_ids, return_dict=False)[0]
        scale = pipe.vae_scale_factor
        return pipe._unpack_latents(out, h * scale, w * scale, scale)


@dataclass(frozen=True)
class PixArtFamily(Family):
    """A DiT with a T5 encoder and an attention mask; it predicts noise and a learned variance
    (twice the channels), of which training uses the noise half, as diffusers' PixArt examples do."""

    denoiser: str = "transformer"
    max_sequence_length: int | None = 300

    def encode_captions(self, pipe, captions, device):
        embeds, mask, _, _ = pipe.encode_prompt(captions, do_classifier_free_guidance=False, device=device,
                                                max_sequence_length=self.max_sequence_length)
        return {"encoder_hidden_states": embeds, "encoder_attention_mask": mask}

    def predict(self, pipe, denoiser, latents, timesteps, cond):
        out = denoiser(latents, encoder_hidden_states=cond["encoder_hidden_states"],
                       encoder_attention_mask=cond["encoder_attention_mask"], timestep=timesteps,
                       added_cond_kwargs={"resolution": None, "aspect_ratio": None}, return_dict=False)[0]
        if out.shape[1] == 2 * latents.shape[1]:
            out = out.chunk(2, dim=1)[0]
        return out

    def sample_kwargs(self):
        # no snapping to the aspect-ratio buckets: validation images are generated at the training size
        return {**super().sample_kwargs(), "use_resolution_binning": False}


@dataclass(frozen=True)
class SanaFamily(FlowFamily):
    """Linear-attention DiT with a Gemma encoder and the deep-compression autoencoder (DC-AE),
    whose latents are deterministic (no posterior to sample) and only scaled."""

    lora_targets: tuple[str, ...] = UNET_TARGETS
    max_sequence_length: int | None = 300

    def encode_images(self, pipe, pixels, generator):
        vae = pipe.vae
        return vae.encode(pixels.to(vae.dtype)).latent * vae.config.scaling_factor

    def encode_captions(self, pipe, captions, device):
        embeds, mask, _, _ = pipe.encode_prompt(captions, do_classifier_free_guidance=False, device=device,
                                                max_sequence_length=self.max_sequence_length,
                                                complex_human_instruction=None)
        return {"encoder_hidden_states": embeds, "encoder_attention_mask": mask}

    def predict(self, pipe, denoiser, latents, timesteps, cond):
        return denoiser(latents, encoder_hidden_states=cond["encoder_hidden_states"],
                        encoder_attention_mask=cond["encoder_attention_mask"], timestep=timesteps,
                        return_dict=False)[0]

    def sample_kwargs(self):
        return {**super().sample_kwargs(), "complex_human_instruction": None, "use_resolution_binning": False}


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("sd", ("StableDiffusionPipeline",)),
    SDXLFamily("sdxl", ("StableDiffusionXLPipeline",)),
    KolorsFamily("kolors", ("KolorsPipeline",)),
    SD3Family("sd3", ("StableDiffusion3Pipeline",)),
    FluxFamily("flux", ("FluxPipeline",)),
    PixArtFamily("pixart", ("PixArtSigmaPipeline",)),
    SanaFamily("sana", ("SanaPipeline", "SanaSprintPipeline")),
)}
_BY_CLASS = {cls: fam for fam in FAMILIES.values() for cls in fam.pipeline_classes}


def detect_family(model_index: dict, where: str = "the pipeline") -> Family:
    """The family of a pipeline from its ``model_index.json``; :class:`UserError` when unknown.

    A ``_class_name`` given as ``[module, class]`` names custom pipeline code, which hubselect
    never runs (no ``trust_remote_code``), so it is refused as well.
    """
    if not isinstance(model_index, dict):
        raise UserError(f"{where}: model_index.json is not a JSON object")
    name = model_index.get("_class_name")
    if isinstance(name, list):
        raise UserError(f"{where}: custom pipeline code {name!r}; hubselect never runs code from the Hub")
    family = _BY_CLASS.get(name) if isinstance(name, str) else None
    if family is None:
        known = ", ".join(sorted(_BY_CLASS))
        raise UserError(f"{where}: unknown pipeline family {name!r} (supported: {known})")
    return family
