"""`hubselect finetune`: every family trains, is scored and pushed; resuming; bad input.

Tiny pipelines (tests/tiny_pipelines.py: scaled-down real configs, random weights, real
tokenizers) are served by the local Hub endpoint; scores use the offline efficientnet probe.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file

from hubselect.errors import UserError
from hubselect.finetune.families import FAMILIES, detect_family
from hubselect.finetune.run import finetune
from hubselect.finetune.trainer import LORA_FILE, FinetuneConfig, batch_indices
from hubselect.zoo.format import Zoo, atomic_write_json
from tests.cli_helpers import run_cli
from tests.tiny_pipelines import FAMILIES as TINY, build_pipeline

EDGES = "hubselect/t2i-finetuning-records"
FAST = dict(steps=4, batch_size=2, lr=5e-3, rank=4, val_size=2, sample_steps=2, resolution=32)
COLORS = {"red": (220, 30, 30), "green": (30, 200, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40),
          "purple": (140, 40, 170), "orange": (240, 140, 20)}


def make_dataset(folder: Path, captions: bool = True, n: int = 6) -> Path:
    """Captioned 32x32 images of coloured shapes (an imagefolder with metadata.jsonl)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (name, rgb) in enumerate(list(COLORS.items())[:n]):
        im = Image.new("RGB", (40, 32), (250, 250, 245))
        draw = ImageDraw.Draw(im)
        shape = "circle" if i % 2 else "square"
        (draw.ellipse if i % 2 else draw.rectangle)((8, 6, 30, 28), fill=rgb)
        im.save(folder / f"{i:02d}.png")
        rows.append({"file_name": f"{i:02d}.png", "text": f"a {name} {shape} on white"})
    if captions:
        (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def efficientnet_zoo(path: Path) -> Zoo:
    path.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path / "zoo.json", {"format": 1, "metric": "efficientnet-fid", "higher_is_better": False,
                                          "probe": "efficientnet"})
    return Zoo.open(path)


def hub_repo_files(hub_root: Path, kind: str, repo: str) -> list[str]:
    base = hub_root / kind / repo
    return sorted(p.relative_to(base).as_posix() for p in base.rglob("*") if p.is_file()) if base.is_dir() else []


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory) -> dict[str, Path]:
    """Every tiny family, built once for this module."""
    root = tmp_path_factory.mktemp("pipelines")
    return {name: build_pipeline(name, root / name) for name in TINY}


@pytest.fixture
def dataset(tmp_path) -> Path:
    return make_dataset(tmp_path / "shapes")


def serve_model(hub_root: Path, folder: Path, repo_id: str) -> None:
    import shutil
    shutil.copytree(folder, hub_root / "models" / repo_id)


# -- family detection ------------------------------------------------------------------------------------

def test_every_family_is_detected_from_model_index():
    for fam in FAMILIES.values():
        for cls in fam.pipeline_classes:
            assert detect_family({"_class_name": cls}).name == fam.name
    with pytest.raises(UserError, match="unknown pipeline family 'WuerstchenCombinedPipeline'"):
        detect_family({"_class_name": "WuerstchenCombinedPipeline"})
    with pytest.raises(UserError, match="never runs code"):
        detect_family({"_class_name": ["my_pipeline", "MyPipeline"]})


def test_batches_are_a_seeded_permutation_per_epoch():
    n, b = 7, 3
    seen = [i for step in range(7) for i in batch_indices(0, step, b, n)]      # 21 draws = 3 epochs
    for epoch in range(3):
        assert sorted(seen[epoch * n:(epoch + 1) * n]) == list(range(n))
    assert batch_indices(0, 5, b, n) == batch_indices(0, 5, b, n)
    assert seen != [i for step in range(7) for i in batch_indices(1, step, b, n)]


# -- every family: train, score, push ---------------------------------------------------------------------

@pytest.mark.parametrize("family", sorted(TINY))
def test_family_trains_scores_and_pushes(family, pipelines, dataset, hub_server, hub_root, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_write")
    repo = f"tiny/{family}"
    serve_model(hub_root, pipelines[family], repo)
    zoo = efficientnet_zoo(tmp_path / "zoo")
    config = FinetuneConfig(model=repo, dataset=str(dataset), probe=None, **FAST)
    out = finetune(config, zoo=zoo, push=True, edges_repo=EDGES, run_dir=tmp_path / "run", checkpoint_every=2)

    assert out["family"] == detect_family(json.loads((pipelines[family] / "model_index.json").read_text())).name
    # the loss on a fixed batch (same items, noise and timesteps) falls
    assert out["eval_loss_after"] < out["eval_loss_before"], (out["eval_loss_before"], out["eval_loss_after"])
    rec = out["record"]
    assert rec["metric"] == "efficientnet-fid" and rec["probe"] == "efficientnet"
    assert rec["model"] == repo and rec["model_sha"] and rec["steps"] == 4
    assert np.isfinite(rec["score"]) and np.isfinite(rec["initial_score"]) and rec["score"] >= 0
    assert rec["adapter_repo"] == f"test-user/{family}-shapes-lora"

    # adapter repo: weights + a card naming base model, dataset, metrics, hyperparameters
    files = hub_repo_files(hub_root, "models", rec["adapter_repo"])
    assert files == ["README.md", LORA_FILE]
    card = (hub_root / "models" / rec["adapter_repo"] / "README.md").read_text()
    assert f"base_model: {repo}" in card and "efficientnet-fid" in card and "| lr | 0.005 |" in card
    weights = load_file(str(hub_root / "models" / rec["adapter_repo"] / LORA_FILE))
    prefix = FAMILIES[out["family"]].denoiser + "."
    assert weights and all(k.startswith(prefix) and "lora" in k for k in weights)
    assert any(v.abs().sum() > 0 for k, v in weights.items() if "lora_B" in k)   # B starts at 0: it trained

    # the record and the dataset's profile in the edge dataset, and the record in the local zoo
    edge_files = hub_repo_files(hub_root, "datasets", EDGES)
    assert f"records/{out['record_id'][:2]}/{out['record_id']}.json" in edge_files
    assert "profiles/efficientnet/shapes.safetensors" in edge_files and "README.md" in edge_files
    local = zoo.read_table("records")
    assert list(local["record_id"]) == [out["record_id"]]
    assert list(local["writer"]) == ["test-user"]            # the pushing token's user, as a sync would find it
    assert local["score"].iloc[0] == pytest.approx(rec["score"])
    # the model was not in the zoo: it was crawled (configs only), so that its record can rank
    assert repo in set(zoo.read_table("models")["model"]) and out["notes"] == []


@pytest.mark.parametrize("family", ["sd", "flux", "sana"])
def test_adapter_loads_into_the_base_pipeline(family, pipelines, dataset, tmp_path):
    """What was pushed is what was trained: diffusers' load_lora_weights reproduces the trained denoiser."""
    from diffusers import DiffusionPipeline
    from peft.utils import get_peft_model_state_dict

    from hubselect.finetune.trainer import Trainer

    config = FinetuneConfig(model=str(pipelines[family]), dataset=str(dataset), probe="efficientnet", **FAST)
    trainer = Trainer(config, run_dir=tmp_path / "run", checkpoint_every=4)
    result = trainer.run()
    base = DiffusionPipeline.from_pretrained(str(pipelines[family]))
    base.load_lora_weights(str(result.adapter_dir))
    denoiser = getattr(base, FAMILIES[result.extra["family"]].denoiser)
    (adapter_name,) = denoiser.peft_config
    trained = get_peft_model_state_dict(trainer.denoiser)
    loaded = get_peft_model_state_dict(denoiser, adapter_name=adapter_name)
    assert sorted(trained) == sorted(loaded) and trained
    assert all(torch.allclose(trained[k].float(), loaded[k].float(), atol=1e-7) for k in trained)
    assert any(trained[k].abs().sum() > 0 for k in trained if "lora_B" in k)


# -- resuming ---------------------------------------------------------------------------------------------

def _cli_env(hub_server) -> dict:
    env = dict(os.environ)
    env.pop("HF_TOKEN", None)
    return env


def test_killed_run_resumes_to_the_same_adapter(pipelines, dataset, tmp_path, hub_server):
    """SIGKILL after a checkpoint, start the same command again: the adapter equals an uninterrupted run's."""
    zoo = efficientnet_zoo(tmp_path / "zoo")
    common = ["finetune", "--model", str(pipelines["sd"]), "--dataset", str(dataset), "--zoo", str(zoo.path),
              "--steps", "30", "--batch-size", "2", "--lr", "1e-3", "--val-size", "2", "--sample-steps", "2",
              "--resolution", "32", "--checkpoint-every", "5", "--seed", "3", "--json"]
    cmd = [sys.executable, "-m", "hubselect.cli"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, *common, "--output", str(killed)], env=_cli_env(hub_server),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (killed / "checkpoints" / "step-00000010" / "state.json").exists():
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "result.json").exists()

    resumed = subprocess.run([*cmd, *common, "--output", str(killed)], env=_cli_env(hub_server),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    out = json.loads(resumed.stdout)
    assert 10 <= out["resumed_from"] < 30
    whole = subprocess.run([*cmd, *common, "--output", str(tmp_path / "whole")], env=_cli_env(hub_server),
                           capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr
    a = load_file(str(killed / "adapter" / LORA_FILE))
    b = load_file(str(tmp_path / "whole" / "adapter" / LORA_FILE))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads(whole.stdout)["record"]["score"] == out["record"]["score"]

    # the same command once more finds the finished run: nothing is trained, the record is the same
    again = run_cli(*common, "--output", str(killed))
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["record_id"] == out["record_id"]
    # The killed-and-resumed run and the whole run are two records (a record's id hashes all of it,
    # its time included) of one score by one writer: the ranker sees one vote.
    records = zoo.read_table("records")
    assert len(records) == 2 and records["score"].nunique() == 1 and set(records["writer"]) == {"local"}
    from hubselect.zoo.tables import ZooTables
    held = ZooTables.load(zoo).records
    assert len(held) == 1 and held["writers"].tolist() == [1]


# -- bad input: one line, exit 2, nothing on the Hub --------------------------------------------------------

def _assert_one_line_error(result, pattern: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hubselect: error: "), result.stderr
    import re
    assert re.search(pattern, lines[0]), lines[0]


def _finetune_args(model: str, data: Path, zoo: Path, *extra: str) -> list[str]:
    return ["finetune", "--model", model, "--dataset", str(data), "--zoo", str(zoo), "--steps", "2",
            "--batch-size", "2", "--val-size", "2", "--sample-steps", "1", "--resolution", "32", *extra]


def test_malformed_datasets_are_refused(pipelines, tmp_path, hub_server):
    zoo = efficientnet_zoo(tmp_path / "zoo").path
    model = str(pipelines["sd"])
    no_captions = make_dataset(tmp_path / "nocap", captions=False)
    _assert_one_line_error(run_cli(*_finetune_args(model, no_captions, zoo)), "has no captions")

    mismatched = make_dataset(tmp_path / "mismatch")
    rows = [json.loads(line) for line in (mismatched / "metadata.jsonl").read_text().splitlines()]
    rows[0]["file_name"] = "missing.png"
    (mismatched / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _assert_one_line_error(run_cli(*_finetune_args(model, mismatched, zoo)), "not in the folder")

    partial = make_dataset(tmp_path / "partial")
    rows = [json.loads(line) for line in (partial / "metadata.jsonl").read_text().splitlines()]
    rows[1] = {"file_name": rows[1]["file_name"], "caption": "another column"}    # columns differ by row
    (partial / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _assert_one_line_error(run_cli(*_finetune_args(model, partial, zoo)), r"\d of 6 images have no caption")

    _assert_one_line_error(run_cli(*_finetune_args(model, tmp_path / "absent", zoo)), "no such folder")
    _assert_one_line_error(run_cli(*_finetune_args(model, partial, zoo, "--lr", "-1")),
                           "--lr must be a positive number")
    assert Zoo.open(zoo).read_table("records") is None


def test_unknown_family_and_gated_model(pipelines, dataset, tmp_path, hub_server, hub_root, monkeypatch):
    zoo = efficientnet_zoo(tmp_path / "zoo").path
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "model_index.json").write_text(json.dumps({"_class_name": "WuerstchenCombinedPipeline"}))
    _assert_one_line_error(run_cli(*_finetune_args(str(odd), dataset, zoo)), "unknown pipeline family")
    hub_server.make_repo("weird/pipe", {"model_index.json": json.dumps({"_class_name": "AmusedPipeline"})})
    _assert_one_line_error(run_cli(*_finetune_args("weird/pipe", dataset, zoo)), "unknown pipeline family")
    _assert_one_line_error(run_cli(*_finetune_args("nobody/nothing", dataset, zoo)),
                           "model nobody/nothing not found on the Hub")

    serve_model(hub_root, pipelines["sd"], "gated/sd")
    meta = hub_root / ".meta" / "models" / "gated" / "sd.json"
    meta.parent.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"gated": "manual"}))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    _assert_one_line_error(run_cli(*_finetune_args("gated/sd", dataset, zoo)), "gated.*HF_TOKEN")
    assert Zoo.open(zoo).read_table("records") is None


@pytest.mark.parametrize("token", [None, "hf_read"])
def test_push_without_write_access_writes_nothing(token, pipelines, dataset, tmp_path, hub_server, hub_root,
                                                  monkeypatch):
    zoo = efficientnet_zoo(tmp_path / "zoo").path
    monkeypatch.delenv("HF_TOKEN", raising=False)
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    result = run_cli(*_finetune_args(str(pipelines["sd"]), dataset, zoo, "--push", "--output", str(tmp_path / "run")))
    _assert_one_line_error(result, "write access")
    assert not (tmp_path / "run").exists()                 # refused before training
    assert hub_repo_files(hub_root, "datasets", EDGES) == []
    assert not (hub_root / "models" / "test-user").exists()
    assert Zoo.open(zoo).read_table("records") is None


def test_probe_must_match_the_zoo_metric(pipelines, dataset, tmp_path, hub_server):
    zoo = efficientnet_zoo(tmp_path / "zoo").path
    _assert_one_line_error(run_cli(*_finetune_args(str(pipelines["sd"]), dataset, zoo, "--probe", "clip")),
                           "ranks by efficientnet-fid")


def test_hub_dataset_is_streamed_and_pinned(pipelines, tmp_path, hub_server, hub_root):
    """--dataset as a Hub ID: read through `datasets` from the endpoint, the record names its commit."""
    from hubselect.hub import HubClient

    folder = make_dataset(tmp_path / "shapes")
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    hub_server.make_repo("org/shapes", files, repo_type="dataset")
    zoo = efficientnet_zoo(tmp_path / "zoo")
    config = FinetuneConfig(model=str(pipelines["sd"]), dataset="org/shapes", probe=None, **FAST)
    out = finetune(config, zoo=zoo, run_dir=tmp_path / "run", checkpoint_every=4)
    rec = out["record"]
    assert rec["dataset"] == "org/shapes"
    assert rec["dataset_revision"] == HubClient().dataset_meta("org/shapes").sha
    assert rec["model"] == "sd" and rec["model_sha"] is None and rec["adapter_repo"] is None
    assert rec["train_samples"] == 4 and rec["val_samples"] == 2
    assert (zoo.path / "profiles" / "efficientnet" / "org--shapes.safetensors").is_file()


def test_pushed_records_sync_into_another_zoo_and_rank(pipelines, tmp_path, hub_server, hub_root, monkeypatch):
    """Two users: one fine-tunes 2 models on 2 datasets and pushes; the other syncs and ranks with them."""
    monkeypatch.setenv("HF_TOKEN", "hf_write")
    mine = efficientnet_zoo(tmp_path / "mine")
    for family in ("sd", "sdxl"):
        serve_model(hub_root, pipelines[family], f"tiny/{family}")
    datasets = [make_dataset(tmp_path / "shapes"), make_dataset(tmp_path / "blobs", n=5)]
    for family in ("sd", "sdxl"):
        for data in datasets:
            config = FinetuneConfig(model=f"tiny/{family}", dataset=str(data), probe=None,
                                    **{**FAST, "steps": 2, "sample_steps": 1})
            finetune(config, zoo=mine, push=True, edges_repo=EDGES, run_dir=tmp_path / f"run-{family}-{data.name}")
    assert len([f for f in hub_repo_files(hub_root, "datasets", EDGES) if f.startswith("records/")]) == 4

    import shutil
    theirs_path = tmp_path / "theirs"                  # the same models, none of the records or profiles
    shutil.copytree(mine.path, theirs_path, ignore=shutil.ignore_patterns("records.*", "profiles", "datasets.*",
                                                                          "dataset_distances.*"))
    theirs = Zoo.open(theirs_path)
    assert theirs.read_table("records") is None and theirs.read_table("models") is not None
    synced = run_cli("sync", "--repo", EDGES, "--zoo", str(theirs.path), "--json")
    assert synced.returncode == 0, synced.stderr
    assert json.loads(synced.stdout)["records_added"] == 4 and json.loads(synced.stdout)["writers"] == {"test-user": 4}
    ranked = run_cli("rank", "shapes", "--zoo", str(theirs.path), "--json")
    assert ranked.returncode == 0, ranked.stderr
    ranking = json.loads(ranked.stdout)
    assert ranking["cold_start"] is False
    assert {m["model"] for m in ranking["ranking"]} == {"tiny/sd", "tiny/sdxl"}
    assert {m["source"] for m in ranking["ranking"]} == {"measured"}
