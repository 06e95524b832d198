"""LoRA fine-tuning of a text-to-image pipeline's denoiser, resumable and deterministic.

One run: load the pipeline (safetensors only), freeze everything, add a peft LoRA adapter to the
denoiser's attention projections, train it with AdamW at a constant learning rate (the paper's
§5.1: 10 000 steps, batch 8, lr 1e-5), then score the fine-tuned pipeline (and, before training,
the pretrained one: ``initial_score``) by generating images from the validation captions.

Determinism and resuming. Every random draw of step ``s`` (which items form the batch, VAE
posterior samples, noise, timesteps) comes from generators seeded by ``(seed, s)`` on the CPU, so a
step does not depend on how the run got there. A checkpoint (every ``checkpoint_every`` steps) holds
the LoRA weights, AdamW's moments and the loss history, all in safetensors + JSON (no pickle); a
run started again with the same settings continues from its latest checkpoint and ends with the
same adapter as a run that was never interrupted.

accelerate handles the device, mixed precision (``--mixed-precision bf16`` on GPUs) and
multi-GPU data parallelism (``accelerate launch -m hubselect.cli finetune ...``): each process
takes its share of every global batch, and only the main process scores, writes and pushes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from hubselect.constants import DEFAULT_PROBE
from hubselect.errors import HubError, UserError, hub_user_error
from hubselect.finetune.data import load_training_data, open_training_source, to_pixels
from hubselect.finetune.families import Family, detect_family

log = logging.getLogger(__name__)

LORA_FILE = "pytorch_lora_weights.safetensors"   # the name diffusers' load_lora_weights looks for
EVAL_SEED = 1234                                 # fixed noise for the validation loss
MIXED_PRECISION = ("no", "fp16", "bf16")


@dataclass
class FinetuneConfig:
    """Everything that decides a run's result (defaults: the paper's §5.1 where it says)."""

    model: str
    dataset: str
    steps: int = 10_000
    batch_size: int = 8
    lr: float = 1e-5
    rank: int = 4                       # diffusers' LoRA examples' default; the paper does not say
    seed: int = 0
    resolution: int | None = None       # None: the pipeline's native resolution
    val_size: int = 256
    max_samples: int = 10_000
    sample_steps: int = 30              # denoising steps when generating validation images
    guidance_scale: float | None = None  # None: the pipeline's default
    probe: str = DEFAULT_PROBE
    weight_decay: float = 1e-2          # AdamW, as diffusers' examples
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    image_column: str | None = None
    caption_column: str | None = None
    split: str | None = None

    # settings that change how a run is executed, not its result
    EXECUTION_ONLY = ("mixed_precision", "gradient_checkpointing")

    def check(self) -> None:
        from hubselect.profile.probes import probe_class
        for name in ("steps", "batch_size", "rank", "max_samples", "sample_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.val_size < 2:
            raise UserError(f"--val-size must be at least 2 (FID needs two images), got {self.val_size}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"--lr must be a positive number, got {self.lr!r}")
        if self.seed < 0:
            raise UserError(f"--seed must be non-negative, got {self.seed}")
        if self.resolution is not None and (self.resolution < 8 or self.resolution % 8):
            raise UserError(f"--resolution must be a multiple of 8, got {self.resolution}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise UserError(f"--mixed-precision must be one of {', '.join(MIXED_PRECISION)}")
        if probe_class(self.probe).modality != "image":
            raise UserError(f"--probe {self.probe} embeds text; scoring generated images needs an image probe")

    def key(self) -> str:
        """A hash of the settings that decide the result: a run folder belongs to one key."""
        values = {k: v for k, v in asdict(self).items() if k not in self.EXECUTION_ONLY}
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class ResolvedModel:
    """Where a pipeline comes from: a local folder, or a Hub repo pinned at a commit."""

    name: str                     # the Hub repo ID, or the folder's name
    local_dir: Path | None        # set for a local folder (and after a Hub download)
    repo_id: str | None
    sha: str | None
    model_index: dict
    family: Family
    # a repo that is not itself a loadable pipeline (hubselect.rank.loadable) is loaded through its counterpart
    loadable: Any = None          # hubselect.rank.loadable.Loadable
    loadable_sha: str | None = None


@dataclass
class FinetuneResult:
    record: dict
    run_dir: Path
    adapter_dir: Path
    scores: dict
    initial_scores: dict
    losses: list[float]
    eval_loss_before: float
    eval_loss_after: float
    resumed_from: int
    seconds: float
    extra: dict = field(default_factory=dict)
    main_process: bool = True          # under `accelerate launch`, only the main process records and pushes

    def to_dict(self) -> dict:
        return {"record": self.record, "run_dir": str(self.run_dir), "adapter_dir": str(self.adapter_dir),
                "scores": self.scores, "initial_scores": self.initial_scores,
                "eval_loss_before": self.eval_loss_before, "eval_loss_after": self.eval_loss_after,
                "resumed_from": self.resumed_from, "seconds": round(self.seconds, 2),
                "steps": len(self.losses), **self.extra}


# -- the model ----------------------------------------------------------------------------------------

def resolve_model(model: str, client=None) -> ResolvedModel:
    """Read a pipeline's model_index.json (no weights yet) and detect its family.

    A Hub repo that is not itself a loadable pipeline (:mod:`hubselect.rank.loadable`: PixArt-Σ 512-MS's
    transformer-only repo, Kolors' original layout) resolves to its loadable counterpart, whose
    model_index.json gives the family; the record keeps the repo's own name and commit.
    Raises :class:`UserError` for a folder without model_index.json, an unknown repo, a gated repo
    without access, or an unknown family, before anything large is downloaded.
    """
    from hubselect.hub import HubClient, is_repo_id
    from hubselect.rank.loadable import loadable_counterpart

    path = Path(model).expanduser()
    if path.exists():
        index_file = path / "model_index.json"
        if not index_file.is_file():
            raise UserError(f"{model}: not a diffusers pipeline folder (no model_index.json)")
        try:
            index = json.loads(index_file.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise UserError(f"{index_file}: not valid JSON ({exc})") from None
        return ResolvedModel(path.resolve().name, path.resolve(), None, None, index, detect_family(index, model))
    if not is_repo_id(model):
        raise UserError(f"{model}: no such folder, and not a Hub model ID (owner/name)")
    client = client or HubClient()
    target = loadable_counterpart(model)
    if target is not None:
        return _resolve_counterpart(model, target, client)
    try:
        meta = client.repo_meta(model)
        if "model_index.json" not in meta.files:
            raise UserError(f"{model}: not a diffusers pipeline repo (no model_index.json)")
        index = client.read_json(model, "model_index.json", revision=meta.sha)
    except HubError as exc:
        raise hub_user_error(exc, f"model {model}") from None
    return ResolvedModel(model, None, model, meta.sha, index, detect_family(index, model))


def _resolve_counterpart(model: str, target, client) -> ResolvedModel:
    """A repo loaded as ``target.repo`` (plus ``target.components`` from the repo itself)."""
    try:
        meta = client.repo_meta(model)
    except HubError as exc:
        raise hub_user_error(exc, f"model {model}") from None
    missing = [c for c in target.components if not any(f.startswith(c + "/") for f in meta.files)]
    if missing:
        raise UserError(f"{model}: no {', '.join(missing)} folder in the repo; it cannot be loaded into "
                        f"{target.repo}")
    try:
        base = client.repo_meta(target.repo)
        if "model_index.json" not in base.files:
            raise UserError(f"{model} loads through {target.repo}, which is not a diffusers pipeline repo "
                            "(no model_index.json)")
        index = client.read_json(target.repo, "model_index.json", revision=base.sha)
    except HubError as exc:
        raise hub_user_error(exc, f"model {target.repo}") from None
    where = f"{model} (loaded through {target.repo})"
    family = detect_family(index, where)
    if index.get("_class_name") != target.pipeline_class:
        raise UserError(f"{where}: {target.repo} is a {index.get('_class_name')}, expected {target.pipeline_class}")
    return ResolvedModel(model, None, model, meta.sha, index, family, loadable=target, loadable_sha=base.sha)


def download_model(resolved: ResolvedModel, client=None) -> Path:
    """The pipeline's files on disk (safetensors, configs, tokenizers; never code or pickle)."""
    from hubselect.constants import hubselect_home
    from hubselect.hub import HubClient
    from hubselect.profile.profiles import dataset_slug
    from hubselect.rank.loadable import download_loadable_pipeline

    if resolved.local_dir is not None:
        return resolved.local_dir
    client = client or HubClient()
    folder = f"{dataset_slug(resolved.repo_id)}@{resolved.sha}"
    if resolved.loadable is not None:   # the counterpart's commit is part of what is loaded
        folder += f"+{dataset_slug(resolved.loadable.repo)}@{resolved.loadable_sha}"
    target = hubselect_home() / "pipelines" / folder
    try:
        download_loadable_pipeline(resolved.repo_id, target, client=client)
    except HubError as exc:
        raise hub_user_error(exc, f"model {resolved.repo_id}") from None
    resolved.local_dir = target
    return target


def load_pipeline(resolved: ResolvedModel, dtype: torch.dtype = torch.float32):
    from diffusers import DiffusionPipeline
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    folder = download_model(resolved)
    # the CLI draws its own bar; the libraries' per-component loading bars would clutter stderr
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        pipe = DiffusionPipeline.from_pretrained(str(folder), torch_dtype=dtype, use_safetensors=True)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{resolved.name}: cannot load the pipeline: {first}") from None
    if type(pipe).__name__ not in resolved.family.pipeline_classes:
        raise UserError(f"{resolved.name}: loaded a {type(pipe).__name__}, expected "
                        f"{'/'.join(resolved.family.pipeline_classes)}")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def native_resolution(pipe) -> int:
    """The pipeline's default image size in pixels."""
    size = getattr(pipe, "default_sample_size", None)
    if size is None:
        denoiser = getattr(pipe, "unet", None) or pipe.transformer
        size = denoiser.config.sample_size
    return int(size) * int(pipe.vae_scale_factor)


# -- randomness -----------------------------------------------------------------------------------------

def _generator(seed: int, step: int, stream: int) -> torch.Generator:
    """A CPU generator for (run seed, step, purpose): the same draws whatever happened before."""
    mixed = int.from_bytes(hashlib.sha256(f"{seed}:{step}:{stream}".encode()).digest()[:8], "little")
    return torch.Generator().manual_seed(mixed)


@functools.lru_cache(maxsize=4)
def _epoch_order(seed: int, epoch: int, n: int) -> tuple[int, ...]:
    return tuple(torch.randperm(n, generator=_generator(seed, epoch, 0)).tolist())


def batch_indices(seed: int, step: int, batch_size: int, n: int) -> list[int]:
    """Items of step ``step``'s global batch: consecutive slices of one seeded permutation per epoch."""
    out = []
    for pos in range(step * batch_size, (step + 1) * batch_size):
        epoch, i = divmod(pos, n)
        out.append(_epoch_order(seed, epoch, n)[i])
    return out


# -- the objective -----------------------------------------------------------------------------------------

class Objective:
    """Noising and the regression target of one objective (diffusion epsilon / v, or rectified flow)."""

    def __init__(self, kind: str, scheduler_config: dict):
        self.kind = kind
        self.num_train_timesteps = int(scheduler_config.get("num_train_timesteps", 1000))
        if kind == "flow":
            # The schedule's static shift (SD3: 3.0) is applied to training sigmas as diffusers' SD3
            # scripts do; resolution-dependent shifting (Flux, Sana: use_dynamic_shifting) is not.
            dynamic = scheduler_config.get("use_dynamic_shifting", False)
            self.shift = 1.0 if dynamic else float(scheduler_config.get("shift", 1.0) or 1.0)
        else:
            from diffusers import DDPMScheduler
            self.scheduler = DDPMScheduler.from_config(scheduler_config)

    def draw(self, latents: torch.Tensor, generator: torch.Generator):
        """(noisy latents, timesteps, target) for clean ``latents``; draws come from ``generator`` on the CPU."""
        b = latents.shape[0]
        noise = torch.randn(latents.shape, generator=generator, dtype=torch.float32).to(latents)
        if self.kind == "flow":
            # logit-normal sigmas (SD3 paper's default weighting scheme), then the static shift
            u = torch.sigmoid(torch.randn(b, generator=generator, dtype=torch.float32))
            sigma = self.shift * u / (1 + (self.shift - 1) * u)
            s = sigma.to(latents).view(b, 1, 1, 1)
            noisy = (1 - s) * latents + s * noise
            return noisy, (sigma * self.num_train_timesteps).to(latents.device), noise - latents
        t = torch.randint(0, self.num_train_timesteps, (b,), generator=generator).to(latents.device)
        noisy = self.scheduler.add_noise(latents, noise, t)
        target = noise if self.kind == "epsilon" else self.scheduler.get_velocity(latents, noise, t)
        return noisy, t, target


# -- checkpoints (safetensors + JSON, no pickle) ----------------------------------------------------------

def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors = {}
    for idx, slots in state["state"].items():
        for name, value in slots.items():
            tensors[f"{idx}.{name}"] = (value if torch.is_tensor(value) else torch.tensor(value)).detach().cpu()
    return tensors, {"param_groups": state["param_groups"]}


def _load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    device = next(p.device for g in optimizer.param_groups for p in g["params"])
    for slots in state.values():
        for name in list(slots):
            if name != "step":
                slots[name] = slots[name].to(device)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _lora_state(denoiser) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict
    return {k: v.detach().float().cpu().contiguous() for k, v in get_peft_model_state_dict(denoiser).items()}


def save_checkpoint(run_dir: Path, step: int, denoiser, optimizer, state: dict, keep: int = 2) -> Path:
    """Write ``checkpoints/step-NNNNNNNN`` atomically (a temporary folder renamed into place)."""
    from safetensors.torch import save_file

    ckpts = run_dir / "checkpoints"
    ckpts.mkdir(parents=True, exist_ok=True)
    final = ckpts / f"step-{step:08d}"
    tmp = ckpts / f".tmp-step-{step:08d}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(_lora_state(denoiser), str(tmp / "lora.safetensors"))
    tensors, meta = _optimizer_tensors(optimizer)
    save_file(tensors, str(tmp / "optimizer.safetensors"))
    (tmp / "state.json").write_text(json.dumps({**state, "step": step, "optimizer": meta}, indent=1))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in sorted(p for p in ckpts.iterdir() if p.name.startswith("step-"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    ckpts = run_dir / "checkpoints"
    if not ckpts.is_dir():
        return None
    done = sorted(p for p in ckpts.iterdir() if p.name.startswith("step-") and (p / "state.json").is_file())
    return done[-1] if done else None


def load_checkpoint(path: Path, denoiser, optimizer) -> dict:
    from peft.utils import set_peft_model_state_dict
    from safetensors.torch import load_file

    state = json.loads((path / "state.json").read_text())
    weights = load_file(str(path / "lora.safetensors"))
    device = next(denoiser.parameters()).device
    set_peft_model_state_dict(denoiser, {k: v.to(device) for k, v in weights.items()})
    _load_optimizer(optimizer, load_file(str(path / "optimizer.safetensors")), state["optimizer"])
    return state


# -- the adapter -----------------------------------------------------------------------------------------

def save_adapter(folder: Path, denoiser_name: str, denoiser, lora_config) -> Path:
    """The LoRA in diffusers' format: ``pytorch_lora_weights.safetensors`` with ``<denoiser>.``-prefixed
    peft keys and the adapter config in the metadata, which ``pipe.load_lora_weights`` reads."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    weights = {f"{denoiser_name}.{k}": v for k, v in _lora_state(denoiser).items()}
    config = {f"{denoiser_name}.{k}": v for k, v in lora_config.to_dict().items()
              if k in ("r", "lora_alpha", "target_modules", "init_lora_weights", "lora_dropout", "use_dora",
                       "rank_pattern", "alpha_pattern", "bias")}
    config = {k: sorted(v) if isinstance(v, set) else v for k, v in config.items()}
    save_file(weights, str(folder / LORA_FILE),
              metadata={"format": "pt", "lora_adapter_metadata": json.dumps(config, sort_keys=True)})
    return folder / LORA_FILE


# -- generation and scores -----------------------------------------------------------------------------------

@torch.no_grad()
def generate(pipe, family: Family, captions: list[str], resolution: int, steps: int, batch_size: int,
             guidance_scale: float | None, autocast, progress: Callable[[int, int], None] | None = None) -> list:
    """One image per caption; image i always starts from the noise of seed i (before and after training)."""
    images = []
    kwargs = dict(family.sample_kwargs())
    if guidance_scale is not None:
        kwargs["guidance_scale"] = guidance_scale
    for start in range(0, len(captions), batch_size):
        chunk = captions[start:start + batch_size]
        gens = [torch.Generator().manual_seed(start + i) for i in range(len(chunk))]
        with autocast():
            out = pipe(prompt=chunk, num_inference_steps=steps, height=resolution, width=resolution,
                       generator=gens, output_type="pil", **kwargs)
        images.extend(out.images)
        if progress is not None:
            progress(len(images), len(captions))
    return images


# -- the run ---------------------------------------------------------------------------------------------

class Trainer:
    """Trains one (model, dataset) pair; :meth:`run` does everything, the other methods are its steps."""

    def __init__(self, config: FinetuneConfig, run_dir: Path | None = None,
                 progress: Callable[[int, int, float], None] | None = None,
                 sample_progress: Callable[[str, int, int], None] | None = None,
                 on_step: Callable[[int, float], None] | None = None, client=None,
                 checkpoint_every: int = 500):
        if checkpoint_every < 1:
            raise UserError(f"--checkpoint-every must be a positive integer, got {checkpoint_every}")
        self.config = config
        self.checkpoint_every = checkpoint_every
        self.run_dir = run_dir
        self.progress = progress                  # (step, steps, loss) after every training step
        self.sample_progress = sample_progress    # ("before" | "after", images done, images) while sampling
        self.on_step = on_step
        self.client = client

    # the user's mistakes surface here, before any weight is downloaded
    def prepare(self) -> None:
        self.config.check()
        self.resolved = resolve_model(self.config.model, client=self.client)
        self.source = open_training_source(self.config.dataset, image_column=self.config.image_column,
                                           caption_column=self.config.caption_column, split=self.config.split)
        if self.run_dir is None:
            self.run_dir = default_run_dir(self.resolved.name, self.source.dataset, self.config.key())
        if self.finished() is None:
            # the scoring probe's weights, before the pipeline's (a probe that cannot load fails fast)
            from hubselect.profile.probes import get_probe
            try:
                get_probe(self.config.probe)
            except UserError as exc:
                raise UserError(f"{exc} (for fine-tuning, in a zoo whose metric is that probe's: "
                                "hubselect finetune ... --zoo DIR)") from None

    def run(self) -> FinetuneResult:
        """Load, score the pretrained pipeline, train (resuming if a checkpoint exists), score again."""
        from accelerate import Accelerator

        cfg = self.config
        if not hasattr(self, "resolved"):
            self.prepare()
        finished = self.finished()
        if finished is not None:
            return finished
        started = time.time()
        self.accelerator = Accelerator(mixed_precision=cfg.mixed_precision)
        if cfg.batch_size % self.accelerator.num_processes:
            raise UserError(f"--batch-size {cfg.batch_size} does not split over "
                            f"{self.accelerator.num_processes} processes")
        self._load()
        self._claim_run_dir()
        checkpoint = latest_checkpoint(self.run_dir)
        state = json.loads((checkpoint / "state.json").read_text()) if checkpoint is not None else {}
        if "initial_scores" not in state:
            # the pretrained pipeline, before any adapter exists: the Initial baseline
            state["initial_scores"] = self._score("before")
            state["eval_loss_before"] = self._eval_loss(self.denoiser)
        lora, params, optimizer = self._add_lora()
        losses: list[float] = []
        start = 0
        if checkpoint is not None:
            state = load_checkpoint(checkpoint, self.denoiser, optimizer)
            losses = list(state.get("losses", []))
            start = int(state["step"])
            log.info("resuming %s from step %d", self.run_dir, start)
        # wall time of the run across restarts: the time saved in the checkpoint, plus (now - started)
        state["seconds"] = float(state.get("seconds", 0.0)) - started
        self._train(params, optimizer, start, losses, state)
        return self._finish(lora, state, losses, start, started)

    # -- the phases of a run ---------------------------------------------------------------------------
    def _load(self) -> None:
        """The pipeline (frozen, on the device), the data cropped to size, and the objective."""
        cfg, family = self.config, self.resolved.family
        weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(cfg.mixed_precision, torch.float32)
        self.pipe = load_pipeline(self.resolved, dtype=weight_dtype)
        self.resolution = cfg.resolution or native_resolution(self.pipe)
        self.data = load_training_data(self.source, self.resolution, cfg.val_size, cfg.max_samples)
        self.pipe.to(self.accelerator.device)
        for module in self.pipe.components.values():
            if isinstance(module, torch.nn.Module):
                module.requires_grad_(False)
        self.family = family
        self.denoiser = getattr(self.pipe, family.denoiser)
        self.objective = Objective(family.objective(self.pipe), dict(self.pipe.scheduler.config))

    def _claim_run_dir(self) -> None:
        """Write settings.json; a folder that holds a run with other settings is refused."""
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        settings_file = self.run_dir / "settings.json"
        if settings_file.is_file() and json.loads(settings_file.read_text()).get("key") != cfg.key():
            raise UserError(f"{self.run_dir} holds a run with other settings; choose another --output")
        settings = {"config": asdict(cfg), "key": cfg.key(), "model": self.resolved.name,
                    "model_sha": self.resolved.sha, "dataset": self.data.dataset,
                    **({"loaded_through": self.resolved.loadable.repo, "loaded_through_sha": self.resolved.loadable_sha}
                       if self.resolved.loadable is not None else {}),
                    "dataset_revision": self.data.revision}
        settings_file.write_text(json.dumps(settings, indent=1))

    def _score(self, when: str) -> dict:
        """FID/KID/CMMD of images generated from the validation captions against the real ones."""
        from hubselect.finetune.scoring import score_images

        cfg = self.config
        report = None
        if self.sample_progress is not None:
            def report(done: int, total: int) -> None:
                self.sample_progress(when, done, total)
        generated = generate(self.pipe, self.family, [s.caption for s in self.data.validation], self.resolution,
                             cfg.sample_steps, max(1, min(cfg.batch_size, 8)), cfg.guidance_scale,
                             self.accelerator.autocast, progress=report)
        return score_images([s.image for s in self.data.validation], generated, probe=cfg.probe).to_dict()

    def _add_lora(self):
        from peft import LoraConfig

        cfg, denoiser = self.config, self.denoiser
        lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.rank, init_lora_weights="gaussian",
                          target_modules=list(self.family.lora_targets))
        with torch.random.fork_rng(devices=[]):
            # LoRA's A matrices are drawn from the global generator: seed it for this run only
            torch.manual_seed(_generator(cfg.seed, -1, 3).initial_seed())
            if hasattr(denoiser, "add_adapter"):
                denoiser.add_adapter(lora)
            else:                      # denoisers without diffusers' PEFT mixin (PixArt): peft directly
                from peft import inject_adapter_in_model
                inject_adapter_in_model(lora, denoiser)
        if cfg.gradient_checkpointing and getattr(denoiser, "_supports_gradient_checkpointing", False):
            denoiser.enable_gradient_checkpointing()
        params = [p for p in denoiser.parameters() if p.requires_grad]
        for p in params:
            p.data = p.data.float()          # LoRA weights train in fp32 under mixed precision
        return lora, params, torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def _train(self, params, optimizer, start: int, losses: list[float], state: dict) -> None:
        cfg, accelerator = self.config, self.accelerator
        model, optimizer = accelerator.prepare(self.denoiser, optimizer)
        world, rank = accelerator.num_processes, accelerator.process_index
        model.train()
        for step in range(start, cfg.steps):
            idx = batch_indices(cfg.seed, step, cfg.batch_size, len(self.data.train))[rank::world]
            loss = self._loss(model, [self.data.train[i] for i in idx], _generator(cfg.seed, step, 1))
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.max_grad_norm > 0:
                accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            value = float(accelerator.reduce(loss.detach(), reduction="mean"))
            losses.append(value)
            done = step + 1
            if self.progress is not None:
                self.progress(done, cfg.steps, value)
            if accelerator.is_main_process and (done % self.checkpoint_every == 0 or done == cfg.steps):
                kept = {k: v for k, v in state.items() if k not in ("step", "optimizer", "seconds")}
                save_checkpoint(self.run_dir, done, accelerator.unwrap_model(model), optimizer,
                                {**kept, "losses": losses, "seconds": state["seconds"] + time.time()})
            if self.on_step is not None:
                self.on_step(done, value)
        accelerator.wait_for_everyone()
        model.eval()
        self.denoiser = accelerator.unwrap_model(model)

    def _finish(self, lora, state: dict, losses: list[float], start: int, started: float) -> FinetuneResult:
        from hubselect.finetune.scoring import metric_name
        from hubselect.share.records import make_record

        cfg, data = self.config, self.data
        eval_after = self._eval_loss(self.denoiser)
        scores = self._score("after")
        adapter_dir = self.run_dir / "adapter"
        save_adapter(adapter_dir, self.family.denoiser, self.denoiser, lora)
        seconds = state["seconds"] + time.time()
        initial = state["initial_scores"]
        record = make_record(
            self.resolved.name, data.dataset, float(scores["fid"]), metric=metric_name(cfg.probe), probe=cfg.probe,
            model_sha=self.resolved.sha, dataset_revision=data.revision, initial_score=float(initial["fid"]),
            steps=cfg.steps, seed=cfg.seed, adapter_repo=None,
            kid=scores["kid"], cmmd=scores["cmmd"], initial_kid=initial["kid"], initial_cmmd=initial["cmmd"],
            family=self.family.name, batch_size=cfg.batch_size, lr=cfg.lr, rank=cfg.rank,
            resolution=self.resolution, train_samples=len(data.train), val_samples=len(data.validation),
            sample_steps=cfg.sample_steps, train_seconds=round(seconds, 1))
        result = FinetuneResult(record=record, run_dir=self.run_dir, adapter_dir=adapter_dir, scores=scores,
                                initial_scores=initial, losses=losses,
                                eval_loss_before=float(state["eval_loss_before"]), eval_loss_after=eval_after,
                                resumed_from=start, seconds=seconds,
                                extra={"family": self.family.name, "objective": self.objective.kind,
                                       "resolution": self.resolution},
                                main_process=self.accelerator.is_main_process)
        if self.accelerator.is_main_process:
            from hubselect.zoo.format import atomic_write_json
            atomic_write_json(self.run_dir / "result.json",
                              {**result.to_dict(), "losses": losses, "key": cfg.key()})
        return result

    def finished(self) -> FinetuneResult | None:
        """The result of this run when it has already completed (same settings), else None."""
        path = self.run_dir / "result.json"
        if not path.is_file() or not (self.run_dir / "adapter" / LORA_FILE).is_file():
            return None
        saved = json.loads(path.read_text())
        if saved.get("key") != self.config.key():
            return None
        return FinetuneResult(record=saved["record"], run_dir=self.run_dir, adapter_dir=self.run_dir / "adapter",
                              scores=saved["scores"], initial_scores=saved["initial_scores"],
                              losses=saved["losses"], eval_loss_before=saved["eval_loss_before"],
                              eval_loss_after=saved["eval_loss_after"], resumed_from=self.config.steps,
                              seconds=saved["seconds"],
                              extra={k: saved[k] for k in ("family", "objective", "resolution") if k in saved})

    # -- one step's loss --------------------------------------------------------------------------------
    def _loss(self, model, items, generator: torch.Generator) -> torch.Tensor:
        pipe, family, accelerator = self.pipe, self.family, self.accelerator
        pixels = to_pixels([s.image for s in items], accelerator.device)
        with torch.no_grad():
            latents = family.encode_images(pipe, pixels, generator).float()
            cond = family.encode_captions(pipe, [s.caption for s in items], accelerator.device)
        noisy, timesteps, target = self.objective.draw(latents, generator)
        with accelerator.autocast():
            pred = family.predict(pipe, model, noisy, timesteps, cond)
        return torch.nn.functional.mse_loss(pred.float(), target.float())

    @torch.no_grad()
    def _eval_loss(self, denoiser) -> float:
        """The loss on (up to 8) validation items with fixed noise: comparable before and after training."""
        return float(self._loss(denoiser, self.data.validation[:8], _generator(EVAL_SEED, 0, 2)))


def default_run_dir(model: str, dataset: str, key: str) -> Path:
    """``$HF_HOME/hubselect/runs/<model>__<dataset>__<settings hash>``: running the same command
    again finds the same folder and resumes."""
    from hubselect.constants import hubselect_home
    from hubselect.profile.profiles import dataset_slug
    return hubselect_home() / "runs" / f"{dataset_slug(model)}__{dataset_slug(dataset)}__{key}"
