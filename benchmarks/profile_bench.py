"""Time the main job on a new dataset: `hubselect rank FOLDER` of 1000 real images, phase by phase.

    python benchmarks/profile_bench.py [--n 1000] [--probes clip,efficientnet] [--repeat 2]
                                       [--sweep-n 256] [--rounds 3] [--batch-sizes 8,16,32,64,128]
                                       [--workers 0,1,2,1@0] [--folder DIR] [--no-sweep] [--keep]

What it builds, in a temporary folder (removed at the end; ``--keep`` keeps it):

* **the new dataset**: ``--n`` images (default 1000) cut from the three real photographs that Python
  packages ship (scikit-learn's ``china.jpg`` and ``flower.jpg``, 640 x 427; matplotlib's
  ``grace_hopper.jpg``, 512 x 600; the sources of ``examples/photos``): seeded random crops (25-100 %
  of the area, aspect 3:4 to 4:3, some mirrored), resized (Lanczos) so that the long side is 256,
  384, 512, 768 or 1024 pixels (a fifth each), saved as JPEG (quality 90; 80 %) and PNG (20 %);
* **an image zoo per probe**, as ``tests/test_rank_images.py`` builds one: the example photos and
  drawings dealt into 3 + 3 folders and profiled for real, planted fine-tuning records of four
  models on them, plus ``--synthetic`` (default 10) datasets with synthetic profiles whose
  covariances have rank 999, as a profile of 1000 images has (full rank for clip's 512 dimensions),
  and records, so that the distance phase costs what it costs on a zoo of real profiles;
* **the clip probe with random weights**: open_clip ViT-B-32 built with random weights and saved
  where the probe looks for its Hub weights (a temporary ``HF_HOME``), so that the benchmark needs
  no Hub; same architecture, same cost. efficientnet uses its real weights.

Then, per probe, one fresh process runs exactly ``hubselect rank FOLDER --zoo ZOO --json`` (after one
rank of a small folder, so that the selector's per-zoo choice is cached as on any later rank) with
light timing wrappers around the profiling path, the distances and the predictor; the table shows
the phases side by side (the fastest of ``--repeat`` runs). Then the sweeps, in this process: images
per forward pass (batch size) and DataLoader workers (and their nice level), ``--sweep-n`` images
(default 256) per measurement, ``--rounds`` rounds with the configurations interleaved, best and
median. Every line says the load average, since other processes on the same cores slow everything
down. A measurement run by hand, not a test.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LONG_SIDES = (256, 384, 512, 768, 1024)
CLIP_REPO = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
CLIP_FILE = "open_clip_model.safetensors"
FAKE_SHA = "0" * 39 + "1"
MODELS = ["org/photo-model", "org/drawing-model", "org/average-model", "org/weak-model"]


# -- the images --------------------------------------------------------------------------------------

def source_photos() -> dict[str, Path]:
    import matplotlib
    import sklearn.datasets

    sk = Path(sklearn.datasets.__file__).parent / "images"
    mpl = Path(matplotlib.get_data_path()) / "sample_data"
    return {"china": sk / "china.jpg", "flower": sk / "flower.jpg", "grace_hopper": mpl / "grace_hopper.jpg"}


def make_folder(dest: Path, n: int, seed: int = 0) -> dict:
    """``n`` crops of the three photographs at several sizes, as JPEG and PNG files in ``dest``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    sources = [(name, Image.open(path).convert("RGB")) for name, path in source_photos().items()]
    dest.mkdir(parents=True)
    sizes, kinds, total_bytes = {}, {"jpg": 0, "png": 0}, 0
    for i in range(n):
        name, im = sources[i % len(sources)]
        w, h = im.size
        area = rng.uniform(0.25, 1.0) * w * h
        aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
        cw = int(min(w, round((area * aspect) ** 0.5)))
        ch = int(min(h, round((area / aspect) ** 0.5)))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = im.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        side = LONG_SIDES[i % len(LONG_SIDES)]
        scale = side / max(cw, ch)
        crop = crop.resize((max(1, round(cw * scale)), max(1, round(ch * scale))), Image.LANCZOS)
        kind = "png" if i % 10 in (3, 8) else "jpg"
        path = dest / f"{name}_{i:04d}.{kind}"
        if kind == "png":
            crop.save(path, "PNG")
        else:
            crop.save(path, "JPEG", quality=90)
        kinds[kind] += 1
        sizes[side] = sizes.get(side, 0) + 1
        total_bytes += path.stat().st_size
    return {"images": n, "long_sides": sizes, "formats": kinds, "megabytes": round(total_bytes / 1e6, 1)}


# -- the clip probe's weights, random ------------------------------------------------------------------

def install_random_clip(hf_home: Path) -> Path:
    """Random ViT-B-32 weights where ClipProbe finds its Hub weights (the cache under ``HF_HOME``)."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    repo = hf_home / "hub" / ("models--" + CLIP_REPO.replace("/", "--"))
    snap = repo / "snapshots" / FAKE_SHA
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(FAKE_SHA)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(snap / CLIP_FILE))
    return snap / CLIP_FILE


# -- the zoo ----------------------------------------------------------------------------------------

def build_zoo(root: Path, probe: str, synthetic: int, seed: int = 0) -> tuple[Path, Path]:
    """A zoo with real small profiles, rank-999 synthetic ones and planted records; and a small new folder."""
    import numpy as np
    import pandas as pd

    from hubselect.profile.profiles import Profile, add_profile_to_zoo, profile_dataset
    from hubselect.zoo.format import Zoo

    zoo_dir = root / f"zoo-{probe}"
    zoo_dir.mkdir()
    (zoo_dir / "zoo.json").write_text(json.dumps({"format": 1, "metric": "clip-fid", "higher_is_better": False,
                                                  "probe": probe}))
    zoo = Zoo.open(zoo_dir)
    folders = {}
    for kind in ("photos", "drawings"):
        files = sorted(p for p in (REPO / "examples" / kind).iterdir() if p.suffix.lower() in (".jpg", ".png"))
        parts = [root / f"data-{probe}" / f"{kind}-{i}" for i in range(4)]
        for part in parts:
            part.mkdir(parents=True)
        for i, f in enumerate(files):
            shutil.copy(f, parts[i % 4] / f.name)
        folders[kind] = parts
    real = []
    for kind, parts in folders.items():
        for part in parts[:3]:
            add_profile_to_zoo(zoo, profile_dataset(str(part), probe=probe, name=part.name))
            real.append((kind, part.name))
    rng = np.random.default_rng(seed)
    template = Profile.load(zoo_dir / "profiles" / probe / f"{real[0][1]}.safetensors")
    d = template.dim
    scale = np.sqrt(np.trace(template.covariance) / d)
    for k in range(synthetic):
        f = rng.standard_normal((d, 999)) * scale
        cov = f @ f.T / 999
        mean = template.mean + rng.standard_normal(d) * scale * 0.5
        add_profile_to_zoo(zoo, Profile(dataset=f"synthetic-{k:02d}", probe=probe, n_samples=1000, mean=mean,
                                        covariance=(cov + cov.T) / 2, source="synthetic"))
    best = {"photos": "org/photo-model", "drawings": "org/drawing-model"}
    rows = []
    for j, (kind, name) in enumerate(real):
        for m in MODELS:
            score = {best[kind]: 10.0, "org/average-model": 14.0, "org/weak-model": 20.0}.get(m, 17.0)
            rows.append({"model": m, "dataset": name, "score": score + 0.3 * (j % 3)})
    for k in range(synthetic):
        for m in MODELS:
            rows.append({"model": m, "dataset": f"synthetic-{k:02d}", "score": float(rng.uniform(10, 20))})
    pd.DataFrame(rows).to_csv(zoo_dir / "records.csv", index=False)
    pd.DataFrame({"model": MODELS, "params": [1e9, 2e9, 1.5e9, 0.5e9]}).to_csv(zoo_dir / "models.csv", index=False)
    return zoo_dir, folders["photos"][3]


# -- the timed command (a child process) ----------------------------------------------------------------

def child(out: Path, argv: list[str]) -> None:
    """Run `hubselect ARGV` in this process with timing wrappers; write the phases to ``out``."""
    started = time.time()
    from hubselect.rank import api as select
    from hubselect.profile import profiles

    marks: dict = {"process_start_wall": started}
    clock = time.perf_counter

    def timed(owner, name, key):
        fn = getattr(owner, name)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            t = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                marks[key] = marks.get(key, 0.0) + clock() - t
        setattr(owner, name, wrapper)

    original_profile = profiles.profile_dataset

    @functools.wraps(original_profile)
    def profile_with_timings(*args, **kwargs):
        marks["profile_start_wall"] = time.time()
        kwargs.setdefault("timings", marks.setdefault("profile", {}))
        return original_profile(*args, **kwargs)

    profiles.profile_dataset = profile_with_timings
    timed(select, "profile_new_dataset", "profile_new_dataset")
    timed(select, "rank", "rank")
    from hubselect.cli import root as cli

    sys.argv = ["hubselect", *argv]
    try:
        cli.main()
    finally:
        marks["rank_end_wall"] = time.time()
        out.write_text(json.dumps(marks))


def run_rank(folder: Path, zoo: Path, env: dict, out: Path) -> dict:
    """`hubselect rank FOLDER --zoo ZOO --json` in a fresh process: wall time, CPU time, phases."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    start = time.time()
    res = subprocess.run([sys.executable, __file__, "--child", str(out), "--", "rank", str(folder), "--zoo", str(zoo),
                          "--json"], env=env, capture_output=True, text=True)
    end = time.time()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise SystemExit(f"hubselect rank failed:\n{res.stderr}")
    marks = json.loads(out.read_text())
    ranking = json.loads(res.stdout)
    p = marks.get("profile", {})
    new_dataset = marks.get("profile_new_dataset", 0.0)
    phases = {
        "start: python, imports, zoo, checks": marks["profile_start_wall"] - start,
        "list the folder": p.get("list", 0.0),
        "load the probe (torch, weights)": p.get("load_probe", 0.0),
        "decode (CPU s)": p.get("decode", 0.0),
        "resize + normalise (CPU s)": p.get("transform", 0.0),
        "wait for decoded images": p.get("wait", 0.0),
        "probe forward": p.get("forward", 0.0),
        "mean + covariance": p.get("moments", 0.0),
        "distances (load profiles, Fréchet)": new_dataset - p.get("total", 0.0),
        "predict (tables, fit, predict, shortlist)": marks.get("rank", 0.0) - new_dataset,
        "output, exit": end - marks["rank_end_wall"],
    }
    return {"wall": end - start, "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "profile_wall": p.get("total", 0.0), "phases": phases, "load": (load, os.getloadavg()[0]),
            "images": p.get("images"), "workers": p.get("workers"), "batch_size": p.get("batch_size"),
            "top": ranking["ranking"][0]["model"] if ranking.get("ranking") else None}


# -- sweeps (in this process) -----------------------------------------------------------------------------

def cpu_seconds() -> float:
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def sweep_once(folder: Path, probe: str, n: int, workers: int, batch_size: int, nice: int) -> dict:
    import torch

    from hubselect.profile import sources as images
    from hubselect.profile.probes import get_probe
    from hubselect.profile.profiles import profile_dataset

    model = get_probe(probe)
    model.forward(torch.zeros((batch_size, 3, 224, 224)))   # warm-up: oneDNN builds its kernels once per shape
    images.WORKER_NICE = nice
    t = {}
    load = os.getloadavg()[0]
    cpu = cpu_seconds()
    start = time.perf_counter()
    profile_dataset(str(folder), probe=probe, n=n, workers=workers, batch_size=batch_size, timings=t)
    wall = time.perf_counter() - start
    return {"ms": 1000 * wall / t["images"], "cpu_ms": 1000 * (cpu_seconds() - cpu) / t["images"],
            "forward_ms": 1000 * t["forward"] / t["images"], "wait_ms": 1000 * t["wait"] / t["images"],
            "load": load}


def sweep(folder: Path, probe: str, n: int, rounds: int, configs: list[tuple[int, int, int]]) -> dict:
    """Each (workers, batch size, nice) measured ``rounds`` times, configurations interleaved so that a
    busy minute on the machine does not fall on one configuration only."""
    out: dict = {c: [] for c in configs}
    for _ in range(rounds):
        for c in configs:
            out[c].append(sweep_once(folder, probe, n, *c))
    return out


def print_sweep(title: str, results: dict) -> None:
    import statistics

    print(f"\n{title}")
    print(f"{'workers':>8}{'batch':>7}{'nice':>6}  {'ms/img best':>12}{'median':>8}  {'forward':>8}{'wait':>7}"
          f"{'CPU ms':>8}  {'load':>10}   runs (ms/img)")
    for (w, b, nice), runs in results.items():
        best = min(runs, key=lambda r: r["ms"])
        loads = [r["load"] for r in runs]
        median = statistics.median(r["ms"] for r in runs)
        print(f"{w:>8}{b:>7}{nice if w else '-':>6}  {best['ms']:>12.1f}{median:>8.1f}  "
              f"{best['forward_ms']:>8.1f}{best['wait_ms']:>7.1f}{best['cpu_ms']:>8.1f}  "
              f"{min(loads):>4.1f}-{max(loads):<4.1f}   " + " ".join(f"{r['ms']:.0f}" for r in runs))


# -- main --------------------------------------------------------------------------------------------------

def main() -> int:
    if "--child" in sys.argv:
        i = sys.argv.index("--child")
        child(Path(sys.argv[i + 1]), sys.argv[sys.argv.index("--") + 1:])
        return 0
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000, help="images in the new dataset")
    p.add_argument("--probes", default="clip,efficientnet")
    p.add_argument("--synthetic", type=int, default=10, help="synthetic datasets (rank-999 profiles) in each zoo")
    p.add_argument("--sweep-n", type=int, default=256, help="images per sweep measurement")
    p.add_argument("--rounds", type=int, default=3, help="measurements of each sweep configuration")
    p.add_argument("--repeat", type=int, default=2, help="timed `hubselect rank` runs per probe")
    p.add_argument("--batch-sizes", default="8,16,32,64,128")
    p.add_argument("--workers", default="0,1,2,1@0", help="worker counts; W@N: W workers at nice N (default 10)")
    p.add_argument("--folder", type=Path, help="an existing image folder to use instead of making one")
    p.add_argument("--no-sweep", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = p.parse_args()
    probes = [x for x in args.probes.split(",") if x]

    root = Path(tempfile.mkdtemp(prefix="hubselect-profile-bench-"))
    hf_home = root / "hf_home"
    os.environ.update({"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"})   # before huggingface_hub is imported
    env = dict(os.environ)
    try:
        if args.folder:
            folder = args.folder.resolve()
            print(f"new dataset: {folder}")
        else:
            folder = root / "new-dataset"
            t = time.perf_counter()
            made = make_folder(folder, args.n)
            print(f"new dataset: {made['images']} images in {folder} ({made['megabytes']} MB, "
                  f"{made['formats']['jpg']} JPEG + {made['formats']['png']} PNG; long side in px: "
                  + ", ".join(f"{k} x{v}" for k, v in sorted(made["long_sides"].items()))
                  + f"), made in {time.perf_counter() - t:.1f} s")
        if "clip" in probes:
            install_random_clip(hf_home)
        import torch

        from hubselect.profile.profiles import default_workers
        print(f"machine: {os.cpu_count()} CPU cores, torch {torch.__version__} with {torch.get_num_threads()} "
              f"threads, default DataLoader workers {default_workers()}")

        results = {}
        for probe in probes:
            zoo, small = build_zoo(root, probe, args.synthetic)
            run_rank(small, zoo, env, root / f"prime-{probe}.json")         # caches the selector's choice
            runs = []
            for _ in range(args.repeat):
                r = run_rank(folder, zoo, env, root / f"marks-{probe}.json")
                runs.append(r)
                print(f"{probe}: hubselect rank {folder.name} --zoo {zoo.name} --json: {r['wall']:.1f} s wall, "
                      f"{r['cpu']:.1f} CPU s, {r['images']} images, batch {r['batch_size']}, "
                      f"{r['workers']} worker(s), load average {r['load'][0]:.1f} -> {r['load'][1]:.1f}, "
                      f"first: {r['top']}", flush=True)
            results[probe] = min(runs, key=lambda r: r["wall"])

        print(f"\nhubselect rank FOLDER ({args.n} images) --zoo ZOO ({6 + args.synthetic} profiled datasets), "
              f"fastest of {args.repeat} runs, seconds (CPU s: summed over the DataLoader workers, overlapped "
              "with the forward pass)")
        print(f"{'phase':<40}" + "".join(f"{p:>14}" for p in probes))
        for phase in next(iter(results.values()))["phases"]:
            print(f"{phase:<40}" + "".join(f"{results[p]['phases'][phase]:>14.2f}" for p in probes))
        print(f"{'profile (list .. covariance), wall':<40}" + "".join(f"{results[p]['profile_wall']:>14.2f}"
                                                                     for p in probes))
        print(f"{'total, wall':<40}" + "".join(f"{results[p]['wall']:>14.2f}" for p in probes))
        print(f"{'total, CPU s (all processes)':<40}" + "".join(f"{results[p]['cpu']:>14.2f}" for p in probes))

        if not args.no_sweep:
            from hubselect.profile.probes import get_probe
            workers = [(int(w.split("@")[0]), int(w.split("@")[1]) if "@" in w else 10)
                       for w in args.workers.split(",")]
            for probe in probes:
                batch = get_probe(probe).batch_size
                configs = [(default_workers(), int(b), 10) for b in args.batch_sizes.split(",")]
                configs += [(w, batch, nice) for w, nice in workers if (w, batch, nice) not in configs]
                res = sweep(folder, probe, args.sweep_n, args.rounds, configs)
                print_sweep(f"{probe}: {args.sweep_n} images per measurement, {args.rounds} rounds, configurations "
                            "interleaved (ms per image, best run; forward, wait and CPU of that run)", res)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
