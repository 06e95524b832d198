"""Denoiser parameters and sampling TFLOPs of the zoo beside the paper's Table 2.

    python benchmarks/table2.py [--zoo zoo_cache] [--tables benchmarks/data/paper_table2.csv]

Prints a markdown table: our counts at each pipeline's native resolution (what the zoo stores),
the same sampling recipe at 512 px (the paper's fine-tuning resolution), and Table 2's figures,
with ratios. Run by hand; it is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hubselect.crawlers import meta  # noqa: E402

# VAE downscale for repos whose VAE config is not in the zoo (transformer-only repos): the factor
# of the VAE the family publishes (SD3/PixArt: KL f8; Sana: DC-AE f32, mit-han-lab/dc-ae-f32c32).
ASSUMED_VAE_SCALE = {"SanaTransformer2DModel": 32}
ALIASES = {"Kwai-Kolors/Kolors": "Kwai-Kolors/Kolors-diffusers"}


def read_table2(path: Path) -> dict[str, dict]:
    """Table 2 by Hub repo ID: the repository's CSV copy (default), or the paper's markdown tables."""
    if path.suffix == ".csv":
        import csv
        rows = csv.DictReader(line for line in path.read_text().splitlines() if not line.startswith("#"))
        return {r["model"]: {"name": r["name"], "tflop": float(r["tflop"]), "params_g": float(r["denoiser_params_g"])}
                for r in rows}
    out = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and re.fullmatch(r"[\w.-]+/[\w.-]+", cells[1].split(" ")[0]):
            out[cells[1].split(" ")[0]] = {"name": cells[0], "tflop": float(cells[3]), "params_g": float(cells[4])}
    return out


def flops_at(record: dict, pixels: int) -> float:
    """Sampling FLOPs per image with the record's recipe at another resolution."""
    den_name = next(n for n, c in record["components"].items() if c["role"] == "denoiser")
    cfg = record["configs"][den_name]
    scale = record["sampling"]["vae_scale_factor"] or ASSUMED_VAE_SCALE.get(record["denoiser_class"], 8)
    latent = pixels // scale
    module = meta.build_on_meta("diffusers", cfg["_class_name"], cfg)
    s = record["sampling"]
    total = meta.denoiser_forward_flops(module, meta.DenoiserGeometry(latent, s["text_tokens"])) \
        * s["num_inference_steps"] * s["cfg_factor"]
    vae_name = next((n for n, c in record["components"].items() if c["role"] == "vae"), None)
    if vae_name and vae_name in record["configs"]:
        vcfg = record["configs"][vae_name]
        total += meta.vae_decode_flops(meta.build_on_meta("diffusers", vcfg["_class_name"], vcfg), latent)
    return total


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--zoo", type=Path, default=REPO / "zoo_cache")
    p.add_argument("--tables", type=Path, default=REPO / "benchmarks" / "data" / "paper_table2.csv",
                   help="Table 2 as CSV (default: the repository's copy) or the paper's markdown tables")
    args = p.parse_args()
    table2 = read_table2(args.tables)
    print("| model | denoiser params (B) | Table 2 (B) | ratio | TFLOP/img native (px) | TFLOP/img at 512 px "
          "| Table 2 TFLOP | native / T2 | 512 px / T2 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for f in sorted((args.zoo / "crawl").glob("*.json")):
        rec = json.loads(f.read_text())
        if rec.get("status") != "ok":
            continue
        ref = table2.get(ALIASES.get(rec["model"], rec["model"]))
        native = rec["flops"]["per_image"] / 1e12
        at512 = flops_at(rec, 512) / 1e12
        res = rec["sampling"]["resolution"] or f"latent {rec['sampling']['latent_size']}"
        mark = "" if rec["flops"]["complete"] else " *"
        if ref:
            print(f"| {rec['model']} | {rec['params_denoiser'] / 1e9:.4f} | {ref['params_g']:.2f} "
                  f"| {rec['params_denoiser'] / 1e9 / ref['params_g']:.4f} | {native:.1f} ({res}){mark} "
                  f"| {at512:.1f}{mark} | {ref['tflop']:.2f} | {native / ref['tflop']:.2f} "
                  f"| {at512 / ref['tflop']:.2f} |")
        else:
            print(f"| {rec['model']} | {rec['params_denoiser'] / 1e9:.4f} | - | - | {native:.1f} ({res}){mark} "
                  f"| {at512:.1f}{mark} | - | - | - |")
    print("\n* no VAE config in the repo: VAE decode not counted (about 2.5 TFLOP at 512 px for a KL-f8 VAE).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
