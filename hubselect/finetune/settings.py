"""The training settings of a fine-tuning run: the FinetuneConfig fields that `finetune` and `sweep` take as options.

Kept apart from trainer.py (which imports torch and diffusers) so that the command line and the sweep read
them without loading either. Names and types are FinetuneConfig's fields (tests/test_cli_help.py checks that
they agree); the defaults are FinetuneConfig's own.
"""

from __future__ import annotations

from typing import Optional

# name -> (type, help)
TRAINING_SETTINGS: dict[str, tuple[type, str]] = {
    "steps": (int, "Training steps (paper: 10 000)."),
    "batch_size": (int, "Global batch size (paper: 8)."),
    "lr": (float, "AdamW learning rate, constant (paper: 1e-5)."),
    "rank": (int, "LoRA rank (alpha = rank)."),
    "seed": (int, "Seed of every random draw of a run."),
    "resolution": (Optional[int], "Training and sampling size in pixels (default: the pipeline's native one)."),
    "val_size": (int, "Validation images (scored; never trained on)."),
    "max_samples": (int, "At most this many items of a dataset."),
    "sample_steps": (int, "Denoising steps per validation image."),
    "guidance_scale": (Optional[float], "Guidance when sampling (default: the pipeline's)."),
    "mixed_precision": (str, "no, fp16 or bf16 (accelerate)."),
    "gradient_checkpointing": (bool, "Trade compute for memory where the denoiser supports it."),
}
