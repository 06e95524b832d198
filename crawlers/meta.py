"""Parameters and sampling FLOPs of a pipeline from its configs alone, on torch's meta device.

Components are built with ``torch.device("meta")``: every tensor has a shape and no storage, so
Flux's 12 B-parameter transformer costs milliseconds and no memory. Classes are resolved from the
``diffusers`` and ``transformers`` packages only; a class from anywhere else (a repo's own code)
is never imported and is reported as unresolvable.

Parameter counts are what a checkpoint stores: every tensor of ``state_dict()``, so persistent
buffers count (SD3's positional embedding is one) and non-persistent ones do not (PixArt's).
Tensors shared between two names (tied weights) count once.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` running the forward pass on meta
tensors. Convention: a multiply-add is 2 FLOPs; matrix products, convolutions and attention
(scaled dot-product) are counted, element-wise work (norms, activations, additions) is not.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

log = logging.getLogger(__name__)

RESOLVABLE_LIBRARIES = ("diffusers", "transformers")
# Length of the prompt embedding fed to the denoiser when the pipeline does not state one:
# CLIP's tokenizer window.
DEFAULT_TEXT_TOKENS = 77
# Resolution assumed when neither the denoiser config nor the pipeline states one.
DEFAULT_PIXELS = 1024
DEFAULT_VAE_SCALE = 8


class UnresolvableClass(Exception):
    """The config names a class that is not in diffusers or transformers."""


@contextlib.contextmanager
def _quiet():
    """Library warnings about random init, deprecated names etc. say nothing about our counts."""
    loggers = [logging.getLogger(n) for n in ("diffusers", "transformers")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def resolve_class(library: str, class_name: str) -> type:
    """The class named by a model_index entry, from diffusers or transformers only."""
    if library not in RESOLVABLE_LIBRARIES:
        raise UnresolvableClass(f"{library}.{class_name} is outside diffusers/transformers")
    module = __import__(library)
    try:
        with _quiet():
            cls = getattr(module, class_name)
    except (AttributeError, ImportError) as exc:
        raise UnresolvableClass(f"{library}.{class_name} not found ({type(exc).__name__})") from None
    if not isinstance(cls, type) or not hasattr(cls, "__init__"):
        raise UnresolvableClass(f"{library}.{class_name} is not a class")
    return cls


def build_on_meta(library: str, class_name: str, config: dict) -> torch.nn.Module:
    """Instantiate a component from its config on the meta device (no weights, no memory)."""
    cls = resolve_class(library, class_name)
    with _quiet(), torch.device("meta"):
        if library == "diffusers":
            if not hasattr(cls, "from_config"):
                raise UnresolvableClass(f"diffusers.{class_name} is not a model class")
            # from_config also maps legacy names (Transformer2DModel with ada_norm_single -> PixArt).
            return cls.from_config(config)
        config_class = getattr(cls, "config_class", None)
        if config_class is None:
            raise UnresolvableClass(f"transformers.{class_name} has no config class")
        cfg = config_class.from_dict({k: v for k, v in config.items() if k != "_name_or_path"})
        return cls(cfg)


def count_stored_tensors(module: torch.nn.Module) -> int:
    """Elements of every tensor a checkpoint of ``module`` would store (shared tensors once)."""
    unique = {id(t): t for t in module.state_dict(keep_vars=True).values()}
    return int(sum(t.numel() for t in unique.values()))


def count_flops(fn, *args, **kwargs) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad(), _quiet():
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


# -- denoiser inputs -------------------------------------------------------------------------------

def _cfg(module: torch.nn.Module) -> dict:
    return dict(getattr(module, "config", {}) or {})


def text_embedding_dim(config: dict) -> int | None:
    """Width of the prompt embedding a denoiser takes, from the config key that defines it."""
    for key in ("caption_channels", "joint_attention_dim", "encoder_hid_dim", "cross_attention_dim"):
        value = config.get(key)
        if isinstance(value, (list, tuple)):
            value = value[0]
        if isinstance(value, int) and value > 0:
            return value
    return None


@dataclass
class DenoiserGeometry:
    latent_size: int          # latent height = width
    text_tokens: int          # prompt embedding length


def denoiser_inputs(module: torch.nn.Module, geometry: DenoiserGeometry) -> dict[str, Any]:
    """Meta tensors for one forward pass of a diffusers denoiser (batch 1).

    Inputs are chosen by the argument names of ``forward`` and sized from the config keys that
    define them, so any UNet or transformer that follows diffusers' conventions works.
    """
    cfg = _cfg(module)
    params = inspect.signature(module.forward).parameters
    meta = dict(device="meta", dtype=torch.float32)
    h = w = geometry.latent_size
    in_ch = cfg.get("in_channels", 4)
    text_dim = text_embedding_dim(cfg)
    if text_dim is None:
        raise ValueError("config has no text-embedding width "
                         "(caption_channels, joint_attention_dim, cross_attention_dim)")
    args: dict[str, Any] = {}
    if "img_ids" in params:
        # Packed-token denoisers (Flux family): 2x2 latent patches flattened into a sequence;
        # in_channels already counts the 4 packed latent channels.
        seq = (h // 2) * (w // 2)
        args["hidden_states"] = torch.empty(1, seq, in_ch, **meta)
        args["img_ids"] = torch.empty(seq, 3, **meta)
        args["txt_ids"] = torch.empty(geometry.text_tokens, 3, **meta)
    else:
        name = "sample" if "sample" in params else "hidden_states"
        args[name] = torch.empty(1, in_ch, h, w, **meta)
    args["encoder_hidden_states"] = torch.empty(1, geometry.text_tokens, text_dim, **meta)
    args["timestep"] = torch.empty(1, **meta)
    if "pooled_projections" in params and cfg.get("pooled_projection_dim"):
        args["pooled_projections"] = torch.empty(1, cfg["pooled_projection_dim"], **meta)
    if "guidance" in params and cfg.get("guidance_embeds"):
        args["guidance"] = torch.empty(1, **meta)
    if "added_cond_kwargs" in params:
        if cfg.get("addition_embed_type") == "text_time":
            # SDXL-style micro-conditioning: six size/crop ids plus a pooled text embedding.
            time_dim = cfg.get("addition_time_embed_dim") or 256
            pooled = (cfg.get("projection_class_embeddings_input_dim") or 6 * time_dim) - 6 * time_dim
            args["added_cond_kwargs"] = {"text_embeds": torch.empty(1, pooled, **meta),
                                         "time_ids": torch.empty(1, 6, **meta)}
        else:
            args["added_cond_kwargs"] = {"resolution": None, "aspect_ratio": None}
    if "return_dict" in params:
        args["return_dict"] = False
    return args


def denoiser_forward_flops(module: torch.nn.Module, geometry: DenoiserGeometry) -> int:
    return count_flops(module, **denoiser_inputs(module, geometry))


def vae_scale_factor(vae_config: dict | None) -> int | None:
    if not vae_config:
        return None
    channels = vae_config.get("block_out_channels") or vae_config.get("decoder_block_out_channels") \
        or vae_config.get("encoder_block_out_channels")
    return 2 ** (len(channels) - 1) if channels else None


def vae_decode_flops(vae: torch.nn.Module, latent_size: int) -> int:
    cfg = _cfg(vae)
    z = torch.empty(1, cfg.get("latent_channels", 4), latent_size, latent_size, device="meta")
    return count_flops(vae.decode, z)
