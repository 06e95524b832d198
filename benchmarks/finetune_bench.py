"""Training throughput of `hubselect finetune` against diffusers' own LoRA example, side by side.

Both train LoRA (rank 4) on the UNet of an SD 1.5-sized pipeline (random weights; configs from
stable-diffusion-v1-5/stable-diffusion-v1-5: UNet 320/640/1280/1280 with cross-attention dim 768,
KL VAE 128/256/512/512, CLIP ViT-L/14 text encoder 12 x 768) on the same captioned image folder,
at the same resolution, batch size, learning rate and mixed precision, in one run on one machine.
Steps per second are measured from step ``warmup`` to the last step (a timestamp after every
optimizer step: our trainer's ``on_step``, the example's progress-bar update), and peak GPU
memory (``torch.cuda.max_memory_allocated``) over the same steps.

The example script is not part of hubselect; pass a copy of diffusers'
``examples/text_to_image/train_text_to_image_lora.py`` (the machine needs no network)::

    python benchmarks/finetune_bench.py --diffusers-script train_text_to_image_lora.py      # GPU: 512 px, batch 8, bf16
    python benchmarks/finetune_bench.py --tiny --diffusers-script ...                         # CPU smoke run, tiny UNet

Without ``--diffusers-script`` only hubselect is measured.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# A runner for the example: timestamps at every update of its training loop's progress bar (the
# bar over range(max_train_steps), told apart from dataset and weight-loading bars by its total).
RUNNER = r"""
import json, runpy, sys, time, torch, tqdm.auto
warmup = int(sys.argv[1]); total = int(sys.argv[2]); script = sys.argv[3]
stamps = {}
original = tqdm.auto.tqdm.update
def update(self, n=1):
    if self.total != total or getattr(self, "desc", "") != "Steps":
        return original(self, n)
    seen = stamps.setdefault(id(self), [])
    seen.append(time.perf_counter())
    if len(seen) == warmup and torch.cuda.is_available():
        torch.cuda.synchronize(); torch.cuda.reset_peak_memory_stats()
    return original(self, n)
tqdm.auto.tqdm.update = update
sys.argv = [script] + sys.argv[4:]
try:
    runpy.run_path(script, run_name="__main__")
finally:
    times = max(stamps.values(), key=len) if stamps else []
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    print("BENCH_JSON " + json.dumps({"times": times, "peak": peak}))
"""


def sd15_pipeline(folder: Path, tiny: bool) -> Path:
    """An SD 1.5-shaped pipeline with random weights (or the tests' tiny one)."""
    from tests.tiny_pipelines import build_pipeline, clip_tokenizer
    if tiny:
        return build_pipeline("sd", folder)
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768, attention_head_dim=8)   # SD 1.5's values
    vae = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, sample_size=512)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                                        num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                                        hidden_act="quick_gelu", projection_dim=768))
    scheduler = PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              skip_prk_steps=True, steps_offset=1)
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in (("unet", unet), ("vae", vae), ("text_encoder", text), ("scheduler", scheduler),
                       ("tokenizer", clip_tokenizer())):
        part.save_pretrained(folder / name)
    index = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"], "text_encoder": ["transformers", "CLIPTextModel"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "PNDMScheduler"],
             "safety_checker": [None, None], "feature_extractor": [None, None], "requires_safety_checker": False}
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def image_folder(folder: Path, n: int, size: int) -> Path:
    """``n`` captioned images (smooth colour fields with noise) in the imagefolder layout."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        base = rng.uniform(0, 255, 3)
        ramp = np.linspace(0, 1, size)[None, :, None] * rng.uniform(-80, 80, 3)
        pixels = np.clip(base + ramp + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:04d}.png")
        rows.append({"file_name": f"{i:04d}.png", "text": f"a colour field number {i % 17}"})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def steps_per_second(times: list[float], warmup: int) -> float:
    timed = times[warmup - 1:]
    return (len(timed) - 1) / (timed[-1] - timed[0])


def run_hubselect(pipe: Path, data: Path, args, work: Path) -> dict:
    from hubselect.finetune.trainer import FinetuneConfig, Trainer

    times: list[float] = []

    def on_step(step: int, loss: float) -> None:
        times.append(time.perf_counter())
        if step == args.warmup and torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    config = FinetuneConfig(model=str(pipe), dataset=str(data), steps=args.warmup + args.steps,
                            batch_size=args.batch_size, lr=1e-4, rank=4, resolution=args.resolution, val_size=2,
                            sample_steps=1, probe="efficientnet", mixed_precision=args.mixed_precision,
                            max_samples=args.images)
    Trainer(config, run_dir=work / "hubselect-run", on_step=on_step, checkpoint_every=10**9).run()
    peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else None
    return {"steps_per_s": steps_per_second(times, args.warmup), "peak_bytes": peak}


def run_diffusers(script: Path, pipe: Path, data: Path, args, work: Path) -> dict:
    cmd = [sys.executable, "-c", RUNNER, str(args.warmup), str(args.warmup + args.steps), str(script),
           "--pretrained_model_name_or_path", str(pipe), "--train_data_dir", str(data),
           "--caption_column", "text", "--resolution", str(args.resolution),
           "--train_batch_size", str(args.batch_size), "--max_train_steps", str(args.warmup + args.steps),
           "--learning_rate", "1e-4", "--lr_scheduler", "constant", "--rank", "4", "--seed", "0",
           "--mixed_precision", args.mixed_precision, "--dataloader_num_workers", "2",
           "--checkpointing_steps", str(10**9), "--output_dir", str(work / "diffusers-run")]
    env = {**os.environ, "WANDB_DISABLED": "true"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"diffusers' script failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(line[len("BENCH_JSON "):])
    return {"steps_per_s": steps_per_second(out["times"], args.warmup), "peak_bytes": out["peak"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diffusers-script", type=Path, help="a copy of diffusers' train_text_to_image_lora.py")
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny SD pipeline at 32 px (CPU smoke run)")
    parser.add_argument("--resolution", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"])
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=1, help="alternate the two trainers this many times")
    args = parser.parse_args()
    gpu = torch.cuda.is_available()
    args.resolution = args.resolution or (32 if args.tiny else 512)
    args.batch_size = args.batch_size or (2 if args.tiny else 8)
    args.mixed_precision = args.mixed_precision or ("bf16" if gpu else "no")

    with tempfile.TemporaryDirectory(prefix="hubselect-bench-") as tmp:
        work = Path(tmp)
        pipe = sd15_pipeline(work / "pipeline", args.tiny)
        data = image_folder(work / "data", args.images, max(args.resolution, 64))
        device = torch.cuda.get_device_name(0) if gpu else "cpu"
        print(f"device: {device}; {'tiny SD' if args.tiny else 'SD 1.5-sized'} UNet, {args.resolution} px, "
              f"batch {args.batch_size}, {args.mixed_precision}, {args.steps} timed steps after {args.warmup}")
        runs: dict[str, list[dict]] = {"hubselect": [], "diffusers": []}
        for i in range(args.repeat):       # alternated, so that drifts of a shared machine hit both
            runs["hubselect"].append(run_hubselect(pipe, data, args, work / f"h{i}"))
            if args.diffusers_script:
                runs["diffusers"].append(run_diffusers(args.diffusers_script.resolve(), pipe, data, args,
                                                       work / f"d{i}"))
    for name, rs in runs.items():
        for i, r in enumerate(rs):
            peak = f"{r['peak_bytes'] / 2**30:.2f} GiB" if r["peak_bytes"] else "n/a"
            print(f"{name:10s} run {i + 1}: {r['steps_per_s']:8.3f} steps/s   peak GPU memory {peak}")
    if runs["diffusers"]:
        ratios = [h["steps_per_s"] / d["steps_per_s"] for h, d in zip(runs["hubselect"], runs["diffusers"])]
        print("ratio hubselect / diffusers per pair: " + ", ".join(f"{r:.3f}" for r in ratios)
              + f"; median {float(np.median(ratios)):.3f}")


if __name__ == "__main__":
    main()
