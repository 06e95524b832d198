"""Describe one pipeline from its configs: components, parameters, sampling FLOPs per image.

Input is what a repo's JSON files say (model_index.json and ``<component>/config.json``); nothing
here touches the network. Works the same for a Hub repo and a local save_pretrained folder, and
never fails the whole pipeline for one component: what cannot be counted is recorded with why.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass, field
from typing import Any

from hubselect.crawlers import meta

log = logging.getLogger(__name__)

DENOISER_NAMES = ("unet", "transformer")
VAE_NAMES = ("vae", "vqvae", "movq")
SCHEDULER_NAMES = ("scheduler",)
PROCESSOR_NAMES = ("feature_extractor", "image_processor")
FALLBACK_STEPS = 50


def component_role(name: str) -> str:
    if name in DENOISER_NAMES:
        return "denoiser"
    if name in VAE_NAMES:
        return "vae"
    if name.startswith("text_encoder"):
        return "text_encoder"
    if name in SCHEDULER_NAMES:
        return "scheduler"
    if name.startswith("tokenizer") or name in PROCESSOR_NAMES:
        return "preprocessing"
    return "other"


@dataclass
class Component:
    name: str
    role: str
    library: str | None
    class_name: str | None
    config: dict | None
    status: str = "pending"          # counted | unresolvable | no_config | failed | not_a_model
    reason: str | None = None
    params: int | None = None
    resolved_class: str | None = None

    def summary(self) -> dict:
        return {"role": self.role, "library": self.library, "class": self.class_name,
                "resolved_class": self.resolved_class, "status": self.status,
                "reason": self.reason, "params": self.params}


@dataclass
class PipelineReport:
    pipeline_class: str | None
    pipeline_class_inferred: bool
    components: dict[str, Component]
    sampling: dict[str, Any] = field(default_factory=dict)
    flops: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def denoiser(self) -> Component | None:
        return next((c for c in self.components.values() if c.role == "denoiser"), None)

    def params_of(self, role: str) -> int | None:
        counts = [c.params for c in self.components.values() if c.role == role and c.params is not None]
        return sum(counts) if counts else None

    @property
    def params_total(self) -> int | None:
        """Denoiser + VAE + text encoders: what sampling loads (safety checkers etc. excluded)."""
        parts = [self.params_of(r) for r in ("denoiser", "vae", "text_encoder")]
        return sum(p for p in parts if p is not None) if any(p is not None for p in parts) else None


class MissingDenoiser(Exception):
    pass


def components_from_configs(model_index: dict | None, configs: dict[str, dict]) -> dict[str, Component]:
    """Components named by model_index.json, or, for repos without one, by their config folders."""
    comps: dict[str, Component] = {}
    if model_index:
        for name, spec in model_index.items():
            if name.startswith("_") or not isinstance(spec, (list, tuple)) or len(spec) != 2:
                continue
            library, class_name = spec
            if library is None or class_name is None:
                continue   # an optional component left empty (e.g. no safety checker)
            comps[name] = Component(name, component_role(name), library, class_name, configs.get(name))
    for name, cfg in configs.items():
        if name in comps:
            continue
        # No model_index entry: a folder's config tells its class; diffusers writes _class_name,
        # transformers writes architectures.
        class_name = cfg.get("_class_name") or next(iter(cfg.get("architectures") or []), None)
        library = "diffusers" if "_class_name" in cfg else ("transformers" if class_name else None)
        comps[name] = Component(name, component_role(name), library, class_name, cfg)
    return comps


def count_component(comp: Component):
    """Build the component on meta and count its stored tensors; returns the module or None."""
    if comp.role in ("scheduler", "preprocessing"):
        comp.status = "not_a_model"   # no tensors: nothing to count
        return None
    if comp.config is None:
        comp.status, comp.reason = "no_config", f"{comp.name}/config.json not in the repo"
        return None
    try:
        module = meta.build_on_meta(comp.library, comp.class_name, comp.config)
    except meta.UnresolvableClass as exc:
        comp.status, comp.reason = "unresolvable", str(exc)
        return None
    except Exception as exc:  # a config the class rejects: record it, keep the other components
        comp.status, comp.reason = "failed", f"{type(exc).__name__}: {str(exc)[:200]}"
        return None
    if not hasattr(module, "state_dict"):
        comp.status = "not_a_model"
        return None
    comp.params = meta.count_stored_tensors(module)
    comp.resolved_class = type(module).__name__
    comp.status = "counted"
    return module


def infer_pipeline_class(denoiser_name: str, denoiser_class: str) -> type | None:
    """The diffusers text-to-image pipeline whose constructor takes this denoiser class."""
    from diffusers.pipelines.auto_pipeline import AUTO_TEXT2IMAGE_PIPELINES_MAPPING
    for pipeline_cls in AUTO_TEXT2IMAGE_PIPELINES_MAPPING.values():
        try:
            annotation = inspect.signature(pipeline_cls.__init__).parameters.get(denoiser_name)
        except (ValueError, TypeError):
            continue
        if annotation is not None and getattr(annotation.annotation, "__name__", None) == denoiser_class:
            return pipeline_cls
    return None


def sampling_defaults(pipeline_cls: type | None) -> dict[str, Any]:
    """Default steps, guidance scale and prompt length from the pipeline's ``__call__``."""
    out: dict[str, Any] = {"num_inference_steps": None, "guidance_scale": None,
                           "max_sequence_length": None, "height": None}
    if pipeline_cls is None:
        return out
    try:
        params = inspect.signature(pipeline_cls.__call__).parameters
    except (ValueError, TypeError):
        return out
    for key in out:
        if key in params and isinstance(params[key].default, (int, float)) \
                and not isinstance(params[key].default, bool):
            out[key] = params[key].default
    return out


def describe_pipeline(model_index: dict | None, configs: dict[str, dict],
                      pipeline_class: str | None = None) -> PipelineReport:
    """Count parameters and sampling FLOPs of a pipeline given its parsed JSON configs.

    ``pipeline_class`` names the pipeline the repo really is when its files do not say so (a
    transformer-only repo) or say otherwise (a publisher's original layout): see hubselect.rank.loadable.
    """
    comps = components_from_configs(model_index, configs)
    denoisers = [c for c in comps.values() if c.role == "denoiser"]
    if not denoisers or denoisers[0].config is None:
        raise MissingDenoiser("no denoiser config (unet/config.json or transformer/config.json)")
    denoiser = denoisers[0]

    pipeline_name = pipeline_class or (model_index or {}).get("_class_name")
    pipeline_cls, inferred = None, False
    if pipeline_name:
        try:
            pipeline_cls = meta.resolve_class("diffusers", pipeline_name)
        except meta.UnresolvableClass:
            pipeline_cls = None
    report_notes: list[str] = []
    modules: dict[str, Any] = {}
    for comp in comps.values():
        module = count_component(comp)
        if module is not None and comp.role in ("denoiser", "vae"):
            modules[comp.name] = module
    if pipeline_cls is None and denoiser.resolved_class:
        pipeline_cls = infer_pipeline_class(denoiser.name, denoiser.resolved_class)
        inferred = pipeline_cls is not None
        if inferred:
            report_notes.append(f"pipeline class inferred from the denoiser: {pipeline_cls.__name__}")
    report = PipelineReport(pipeline_cls.__name__ if pipeline_cls else pipeline_name, inferred, comps,
                            notes=report_notes)
    for comp in comps.values():
        if comp.status in ("unresolvable", "failed", "no_config"):
            report.notes.append(f"{comp.name}: {comp.reason}")

    _count_sampling_flops(report, denoiser, modules, pipeline_cls)
    return report


def _count_sampling_flops(report: PipelineReport, denoiser: Component, modules: dict, pipeline_cls) -> None:
    defaults = sampling_defaults(pipeline_cls)
    den_cfg = denoiser.config or {}
    vae = next((c for c in report.components.values() if c.role == "vae"), None)
    vae_scale = meta.vae_scale_factor(vae.config if vae else None)

    latent = den_cfg.get("sample_size")
    if isinstance(latent, (list, tuple)):
        latent = latent[0]
    if not isinstance(latent, int):
        pixels = defaults["height"] or meta.DEFAULT_PIXELS
        latent = pixels // (vae_scale or meta.DEFAULT_VAE_SCALE)
        report.notes.append(f"denoiser config has no sample_size: {pixels} px assumed")
    steps = defaults["num_inference_steps"]
    if steps is None:
        steps = FALLBACK_STEPS
        report.notes.append(f"default step count unknown: {FALLBACK_STEPS} assumed")
    guidance = defaults["guidance_scale"]
    # Classifier-free guidance runs the denoiser twice per step (conditional + unconditional),
    # unless guidance is distilled into the model as an embedding (Flux dev).
    cfg_factor = 2 if (guidance is not None and guidance > 1 and not den_cfg.get("guidance_embeds")) else 1
    text_tokens = defaults["max_sequence_length"] or meta.DEFAULT_TEXT_TOKENS
    report.sampling = {
        "latent_size": latent, "vae_scale_factor": vae_scale,
        "resolution": latent * vae_scale if vae_scale else None,
        "num_inference_steps": steps, "guidance_scale": guidance, "cfg_factor": cfg_factor,
        "text_tokens": text_tokens,
    }

    flops: dict[str, Any] = {"denoiser_forward": None, "vae_decode": None, "per_image": None,
                             "complete": False}
    den_module = modules.get(denoiser.name)
    if den_module is not None:
        try:
            flops["denoiser_forward"] = meta.denoiser_forward_flops(
                den_module, meta.DenoiserGeometry(latent_size=latent, text_tokens=text_tokens))
        except Exception as exc:
            report.notes.append(f"denoiser FLOPs not counted: {type(exc).__name__}: {str(exc)[:160]}")
    if vae is not None and vae.name in modules:
        try:
            flops["vae_decode"] = meta.vae_decode_flops(modules[vae.name], latent)
        except Exception as exc:
            report.notes.append(f"VAE decode FLOPs not counted: {type(exc).__name__}: {str(exc)[:160]}")
    else:
        report.notes.append("no VAE config: decode FLOPs not counted")
    if flops["denoiser_forward"] is not None:
        flops["per_image"] = flops["denoiser_forward"] * steps * cfg_factor + (flops["vae_decode"] or 0)
        flops["complete"] = flops["vae_decode"] is not None
    report.flops = flops
