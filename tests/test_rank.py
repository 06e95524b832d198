"""`hubselect rank`: planted zoos, cold start, measured vs predicted, download, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from hubselect import rank as api_rank
from hubselect.hub import pipeline_files
from hubselect.rank.prior import prior_position
from hubselect.rank.estimator import MatchAndChoose
from hubselect.evaluate.synthetic import make_synthetic_zoo
from tests.hub_server import make_repo
from tests.cli_helpers import run_cli

REPO = Path(__file__).resolve().parents[1]




@pytest.mark.parametrize("higher_is_better", [True, False], ids=["accuracy-like", "fid-like"])
def test_planted_zoo_ranks_the_right_model_first_for_each_kind(tmp_path, higher_is_better):
    planted = make_synthetic_zoo(n_models=8, n_datasets=16, higher_is_better=higher_is_better, seed=3)
    planted.write(tmp_path / "zoo")
    for dataset in ["kind0/ds00", "kind1/ds01", "kind0/ds06", "kind1/ds07"]:
        ranking = api_rank(dataset, zoo=tmp_path / "zoo", holdout=True)
        top = ranking.models[0]
        assert planted.favourite[top.model] == planted.kinds[dataset], (dataset, top)
        assert top.source == "predicted" and 0 < top.confidence <= 1
        assert len(ranking.models) == 8 and not ranking.cold_start


def test_graph_embedding_alone_carries_the_planted_structure(tmp_path):
    planted = make_synthetic_zoo(n_models=8, n_datasets=16, seed=5)
    planted.write(tmp_path / "zoo")
    graph_only = MatchAndChoose(use_features=False, rank_features=False, use_graph=True, blend=1.0)
    hits = 0
    for dataset in planted.kinds:
        top = api_rank(dataset, zoo=tmp_path / "zoo", holdout=True, method=graph_only).models[0]
        hits += planted.favourite[top.model] == planted.kinds[dataset]
    assert hits >= 0.75 * len(planted.kinds)


def test_known_dataset_shows_measured_and_predicted(tmp_path):
    planted = make_synthetic_zoo(n_models=6, n_datasets=10, seed=2)
    # Drop half the records of one dataset: those models must be predicted.
    target = "kind0/ds00"
    rec = planted.records
    dropped = rec[(rec.dataset == target)].model.iloc[:3].tolist()
    planted.records = rec[~((rec.dataset == target) & rec.model.isin(dropped))]
    planted.write(tmp_path / "zoo")
    ranking = api_rank(target, zoo=tmp_path / "zoo")
    sources = {m.model: m.source for m in ranking.models}
    assert {sources[m] for m in dropped} == {"predicted"}
    measured = [m for m in ranking.models if m.source == "measured"]
    assert len(measured) == 3 and all(m.measured_score is not None for m in measured)
    # measured models keep their measured order
    scores = [m.measured_score for m in measured]
    assert scores == sorted(scores, reverse=True)
    held = api_rank(target, zoo=tmp_path / "zoo", holdout=True)
    assert {m.source for m in held.models} == {"predicted"}


def test_cold_start_on_the_shipped_zoo_falls_back_to_the_published_ranking(tmp_path):
    zoo = tmp_path / "zoo"
    shutil.copytree(REPO / "zoo_cache", zoo)
    before = {p: p.read_bytes() for p in zoo.rglob("*") if p.is_file()}
    res = run_cli("rank", str(REPO / "examples" / "photos"), "--zoo", str(zoo), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["cold_start"] is True and "cold start" in out["notes"][0]
    prior = [r for r in out["ranking"] if r["source"] == "prior"]
    positions = [prior_position(r["model"]) for r in prior]
    assert positions == sorted(positions) and positions[0] == 1
    assert prior[0]["model"] == "stabilityai/stable-diffusion-xl-base-1.0"
    assert len(prior) == len(out["ranking"]) == 8          # Kwai-Kolors/Kolors counts as Kolors-diffusers
    first = out["ranking"][0]
    assert {"rank", "model", "score", "confidence", "tflops_per_image", "license"} <= set(first)
    assert first["tflops_per_image"] > 100
    assert {p: p.read_bytes() for p in zoo.rglob("*") if p.is_file()} == before   # rank writes nothing


def test_transfergraph_holdout_returns_every_model():
    zoo = REPO / "benchmarks" / "zoos" / "transfergraph-text"
    n_models = len(pd.read_csv(zoo / "models.csv"))
    res = run_cli("rank", "glue/cola", "--zoo", str(zoo), "--holdout", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert len(out["ranking"]) == n_models == len({r["model"] for r in out["ranking"]})
    assert [r["rank"] for r in out["ranking"]] == list(range(1, n_models + 1))
    assert all(r["source"] == "predicted" for r in out["ranking"])


def test_pipeline_files_keep_one_safetensors_variant_and_no_code():
    files = ["model_index.json", "README.md", "v1-5.safetensors", "unet/config.json",
             "unet/diffusion_pytorch_model.safetensors", "unet/diffusion_pytorch_model.fp16.safetensors",
             "unet/diffusion_pytorch_model.bin", "text_encoder/model.fp16.safetensors", "text_encoder/config.json",
             "tokenizer/vocab.json", "tokenizer/merges.txt", "pipeline.py", "unet/custom.py"]
    kept = pipeline_files(files)
    assert "unet/diffusion_pytorch_model.safetensors" in kept
    assert "unet/diffusion_pytorch_model.fp16.safetensors" not in kept
    assert "text_encoder/model.fp16.safetensors" in kept          # the only variant there is
    assert not [f for f in kept if f.endswith((".bin", ".py"))] and "v1-5.safetensors" not in kept
    assert pipeline_files(files, variant="fp16").count("unet/diffusion_pytorch_model.fp16.safetensors") == 1


@pytest.mark.parametrize("args,needle", [
    (["rank", "kind0/ds00", "--top", "0"], "--top"),
    (["rank", "kind0/ds00", "--predictor", "nope"], "unknown predictor"),
    (["rank", "kind0/ds00", "--probe", "nope"], "probe"),
    (["rank", "/no/such/folder/anywhere"], ""),
])
def test_rank_bad_input_is_one_line_exit_2(tmp_path, args, needle):
    make_synthetic_zoo(n_models=4, n_datasets=6).write(tmp_path / "zoo")
    before = sorted(p.name for p in (tmp_path / "zoo").iterdir())
    res = run_cli(*args, "--zoo", str(tmp_path / "zoo"))
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in res.stderr
    assert sorted(p.name for p in (tmp_path / "zoo").iterdir()) == before


@pytest.mark.parametrize("damage,needle", [
    ("no_models", "no models table"),
    ("bad_zoo_json", "zoo.json"),
    ("bad_records", "records"),
])
def test_damaged_zoo_is_a_one_line_error(tmp_path, damage, needle):
    zoo = tmp_path / "zoo"
    make_synthetic_zoo(n_models=4, n_datasets=6).write(zoo)
    if damage == "no_models":
        (zoo / "models.csv").unlink()
    elif damage == "bad_zoo_json":
        (zoo / "zoo.json").write_text("{not json")
    else:
        (zoo / "records.csv").write_text("model,dataset\nx,y\n")
    res = run_cli("rank", "kind0/ds00", "--zoo", str(zoo))
    assert res.returncode == 2 and needle in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_download_fetches_one_safetensors_variant_and_never_code(hub_server, tmp_path):
    from tests.tiny_pipelines import sd_unet_pipeline, write_pipeline
    repo = Path(hub_server.root) / "models" / "someone" / "tiny-sd"
    comps, index = sd_unet_pipeline()
    write_pipeline(repo, comps, index)
    unet_weights = (repo / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()
    (repo / "unet" / "diffusion_pytorch_model.fp16.safetensors").write_bytes(unet_weights)
    (repo / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"pickle would run code")
    (repo / "pipeline.py").write_text("raise SystemExit('never run')")
    (repo / "tiny-sd.safetensors").write_bytes(unet_weights)
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "zoo.json").write_text(json.dumps({"format": 1, "metric": "clip-fid", "higher_is_better": False}))
    pd.DataFrame({"model": ["someone/tiny-sd", "someone/absent"]}).to_csv(zoo / "models.csv", index=False)
    out_dir = tmp_path / "pipeline"
    res = run_cli("rank", str(REPO / "examples" / "photos"), "--zoo", str(zoo), "--download", str(out_dir), "--json")
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)["download"]
    assert got["model"] == "someone/tiny-sd"
    fetched = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*")
                     if p.is_file() and ".cache" not in p.parts)
    assert "unet/diffusion_pytorch_model.safetensors" in fetched and "model_index.json" in fetched
    assert not [f for f in fetched if f.endswith((".bin", ".py")) or "fp16" in f or f == "tiny-sd.safetensors"]
    served = {p for r, p in hub_server.resolved_files() if r == "someone/tiny-sd"}
    assert not [p for p in served if p.endswith((".bin", ".py"))]
    from diffusers import UNet2DConditionModel
    unet = UNet2DConditionModel.from_pretrained(out_dir / "unet")      # loads from safetensors
    assert sum(p.numel() for p in unet.parameters()) == sum(p.numel() for p in comps["unet"].parameters())


def test_rank_of_unusable_new_datasets_is_a_one_line_error(hub_server, tmp_path):
    """Unknown Hub dataset, gated dataset without token, folder with no image: exit 2, zoo untouched."""
    zoo = tmp_path / "zoo"
    make_synthetic_zoo(n_models=4, n_datasets=6).write(zoo)
    (zoo / "zoo.json").write_text(json.dumps({"format": 1, "metric": "m", "higher_is_better": True,
                                              "probe": "efficientnet"}))
    make_repo(hub_server.root, "someone/gated-images", {"data/a.txt": "x"}, repo_type="dataset",
              meta={"gated": "manual"})
    empty = tmp_path / "no-images"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing to see")
    before = {p: p.read_bytes() for p in zoo.rglob("*") if p.is_file()}
    for target, needle in (("someone/no-such-dataset", "no-such-dataset"),
                           ("someone/gated-images", "gated"),
                           (str(empty), "image")):
        res = run_cli("rank", target, "--zoo", str(zoo), env={"HUBSELECT_HUB_RETRIES": "0"})
        assert res.returncode == 2, (target, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0].lower(), (target, lines)
    assert {p: p.read_bytes() for p in zoo.rglob("*") if p.is_file()} == before
