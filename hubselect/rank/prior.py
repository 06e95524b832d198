"""The cold-start fallback: the paper's published average ranking after fine-tuning.

Source: Lewandowski, Chen & Birke (2025), "Match & Choose", the average ranking over their 32
datasets (the "Overall" baseline, the only per-model result the paper publishes), best first;
repo IDs from the paper's references (its Table 2). It is used only when a zoo has no fine-tuning
records, and is always labelled as such (``source: "prior"``).
"""

from __future__ import annotations

PAPER_AVERAGE_RANKING: tuple[str, ...] = (
    "stabilityai/stable-diffusion-xl-base-1.0",
    "stabilityai/stable-diffusion-3.5-medium",
    "RunDiffusion/Juggernaut-X-v10",
    "Efficient-Large-Model/Sana_1600M_1024px_diffusers",
    "Kwai-Kolors/Kolors-diffusers",
    "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "PixArt-alpha/PixArt-Sigma-XL-2-512-MS",
    "segmind/Segmind-Vega",
    "black-forest-labs/FLUX.1-dev",
    "Efficient-Large-Model/SANA1.5_4.8B_1024px_diffusers",
)

# Repos that hold the same weights as a ranked one under another name.
SAME_MODEL = {
    "Kwai-Kolors/Kolors": "Kwai-Kolors/Kolors-diffusers",
    "runwayml/stable-diffusion-v1-5": "stable-diffusion-v1-5/stable-diffusion-v1-5",
}
PRIOR_SOURCE = "Match & Choose (2025), published average ranking over 32 datasets"


def prior_position(model: str) -> int | None:
    """1-based position of ``model`` in the published ranking, or None if it is not covered."""
    name = SAME_MODEL.get(model, model)
    return PAPER_AVERAGE_RANKING.index(name) + 1 if name in PAPER_AVERAGE_RANKING else None
