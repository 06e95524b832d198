"""`hubselect sweep`: pending pairs, the local and hf-jobs backends, --suggest.

Everything talks to the local Hub endpoint (tests/hub_server/), which also answers
the Jobs API without running anything. Tiny pipelines train in a few steps; scores use
the offline efficientnet probe.
"""

from __future__ import annotations

import json
import shlex
import sys

import numpy as np
import pandas as pd
import pytest

import hubselect.sweep as sweeps
from hubselect.share import make_record, push_records
from hubselect.rank.estimator import MatchAndChoose
from hubselect.zoo.tables import ZooTables
from hubselect.evaluate.synthetic import make_synthetic_zoo
from hubselect.zoo.format import Zoo, atomic_write_json
from tests.cli_helpers import run_cli
from tests.hub_server import WRITE_TOKEN, make_repo
from tests.test_finetune import FAST, efficientnet_zoo, make_dataset
from tests.tiny_pipelines import build_pipeline

EDGES = "hubselect/t2i-finetuning-records"


def edge_records_on_disk(hub_root) -> list[dict]:
    folder = hub_root / "datasets" / EDGES / "records"
    files = sorted(folder.rglob("*.json")) if folder.is_dir() else []
    return [json.loads(f.read_text()) for f in files]


# -- the package ------------------------------------------------------------------------------

def test_the_package_forwards_the_public_names_of_its_modules():
    import importlib

    for module in ("pairs", "local", "jobs", "suggestions", "run"):
        mod = importlib.import_module(f"hubselect.sweep.{module}")
        for name, value in vars(mod).items():
            if not name.startswith("_") and getattr(value, "__module__", None) == mod.__name__:
                assert getattr(sweeps, name) is value, name
    # `suggest` is the function, never its module; the CLI builds its help from BACKENDS
    assert callable(sweeps.suggest) and sweeps.suggest.__module__ == "hubselect.sweep.suggestions"
    assert sweeps.BACKENDS == ("local", "hf-jobs")


# -- local backend (the acceptance) ---------------------------------------------

def test_local_sweep_records_each_pair_once(hub_server, hub_root, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)
    for family in ("sd", "sdxl"):
        build_pipeline(family, hub_root / "models" / "tiny" / family)
    shapes = make_dataset(tmp_path / "shapes")
    blobs = make_dataset(tmp_path / "blobs", n=5)
    uncaptioned = make_dataset(tmp_path / "uncaptioned", captions=False)
    zoo = efficientnet_zoo(tmp_path / "zoo")
    models = ["tiny/sd", "tiny/sdxl"]
    settings = {**FAST, "steps": 2, "sample_steps": 1}
    seen = []

    # a dataset that fails (no captions) comes first: its pairs fail, the sweep goes on
    report = sweeps.sweep(models, [str(uncaptioned), f"{shapes},{blobs}"], zoo=zoo,
                          settings=settings, edges_repo=EDGES,
                          progress=lambda done, total, item: seen.append((done, total)))
    assert report["requested"] == 6 and len(report["pending"]) == 6
    assert [r["status"] for r in report["runs"]] == ["failed"] * 2 + ["done"] * 4
    assert report["failed"] == 2 and "caption" in report["runs"][0]["error"]
    assert seen[-1] == (6, 6)
    records = edge_records_on_disk(hub_root)
    assert len(records) == 4
    assert {(r["model"], r["dataset"]) for r in records} == {
        (m, d) for m in models for d in ("shapes", "blobs")}
    assert {r["metric"] for r in records} == {"efficientnet-fid"}
    assert len(zoo.read_table("records")) == 4

    # the same sweep again runs nothing: the local zoo knows the 4 pairs ...
    again = sweeps.sweep(models, [str(shapes), str(blobs)], zoo=zoo, settings=settings,
                         edges_repo=EDGES)
    assert again["pending"] == [] and again["runs"] == [] and again["failed"] == 0
    # ... and so does the edge dataset, for a zoo that has never seen them
    fresh = efficientnet_zoo(tmp_path / "fresh")
    pending = sweeps.pending_pairs(models, [shapes, blobs], zoo=fresh, edges_repo=EDGES)
    assert pending == []
    assert len(edge_records_on_disk(hub_root)) == 4


def test_accelerate_command_for_multi_gpu_machines():
    pair = sweeps.Pair("org/model", "/data/shapes", "org/model", "shapes")
    cmd = sweeps.accelerate_command(pair, {"steps": 10, "gradient_checkpointing": True},
                                    zoo="/z", edges_repo="o/e", processes=4)
    assert cmd[:7] == [sys.executable, "-m", "accelerate.commands.launch",
                       "--multi_gpu", "--num_processes", "4", "-m"]
    assert cmd[7:9] == ["hubselect.cli", "finetune"]
    assert cmd[9:] == ["--model", "org/model", "--dataset", "/data/shapes", "--push",
                       "--edges-repo", "o/e", "--zoo", "/z", "--json", "--steps", "10",
                       "--gradient-checkpointing"]


# -- hf-jobs backend ----------------------------------------------------------------------

def hub_inputs(hub_root) -> tuple[list[str], list[str]]:
    """Two model repos and two dataset repos on the local Hub (no weights needed)."""
    index = json.dumps({"_class_name": "StableDiffusionPipeline"})
    models = ["tiny/sd", "tiny/sdxl"]
    for repo in models:
        make_repo(hub_root, repo, {"model_index.json": index})
    datasets = ["org/photos", "org/drawings"]
    for repo in datasets:
        make_repo(hub_root, repo, {"README.md": "# images\n"}, repo_type="dataset")
    return models, datasets


def test_hf_jobs_submits_pending_pairs_with_the_token_only_in_secrets(
        hub_server, hub_root, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)
    models, datasets = hub_inputs(hub_root)
    zoo = efficientnet_zoo(tmp_path / "zoo")
    push_records([make_record("tiny/sd", "org/photos", 12.0, metric="efficientnet-fid",
                              probe="efficientnet")], repo_id=EDGES)
    result = run_cli("sweep", "--models", ",".join(models), "--datasets", datasets[0],
                     "--datasets", datasets[1], "--backend", "hf-jobs", "--flavor",
                     "a10g-small", "--timeout", "2h", "--steps", "50", "--wait",
                     "--poll-interval", "0.05", "--zoo", str(zoo.path), "--edges-repo",
                     EDGES, "--json", timeout=300)
    assert result.returncode == 0, result.stderr
    assert WRITE_TOKEN not in result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["requested"] == 4 and len(report["pending"]) == 3
    assert [r["stage"] for r in report["runs"]] == ["COMPLETED"] * 3

    jobs = list(hub_server.jobs.values())
    assert len(jobs) == 3
    submitted = set()
    for job in jobs:
        spec = job["spec"]
        assert spec["flavor"] == "a10g-small" and spec["timeoutSeconds"] == 7200
        assert spec["dockerImage"] == sweeps.JOB_IMAGE
        assert spec["secrets"] == {"HF_TOKEN": WRITE_TOKEN}
        assert WRITE_TOKEN not in json.dumps([spec["command"], spec["environment"],
                                              spec.get("labels")])
        shell, flag, script = spec["command"]
        assert (shell, flag) == ("bash", "-c")
        assert script.startswith("pip install --quiet hubselect && ")
        finetune = shlex.split(script.rsplit(" && ", 1)[1])
        assert finetune[:3] == ["hubselect", "finetune", "--model"]
        assert {"--push", "--json"} <= set(finetune)
        assert finetune[finetune.index("--edges-repo") + 1] == EDGES
        assert finetune[finetune.index("--steps") + 1] == "50"
        assert '"metric": "efficientnet-fid"' in script    # the job's zoo: same metric
        submitted.add((finetune[3], finetune[5]))
    assert submitted == {(m, d) for m in models for d in datasets} - {
        ("tiny/sd", "org/photos")}


def test_hf_jobs_are_not_submitted_twice_and_failures_are_reported(
        hub_server, hub_root, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)
    models, datasets = hub_inputs(hub_root)
    hub_server.job_final_stage = "ERROR"
    zoo = efficientnet_zoo(tmp_path / "zoo")
    first = sweeps.sweep(models[:1], datasets[:1], backend="hf-jobs", zoo=zoo,
                         edges_repo=EDGES)
    assert first["runs"][0]["stage"] == "SCHEDULING" and first["failed"] == 0
    # the pair has no record until its Job ends, but its Job is still running
    again = sweeps.sweep(models[:1], datasets[:1], backend="hf-jobs", zoo=zoo,
                         edges_repo=EDGES, wait=True, poll_interval=0.01)
    (run,) = again["runs"]
    assert run["status"] == "running" and run["job_id"] == first["runs"][0]["job_id"]
    assert len(hub_server.jobs) == 1
    assert run["stage"] == "ERROR" and again["failed"] == 1
    assert any("hubselect finetune" in line for line in run["log_tail"])
    assert WRITE_TOKEN not in json.dumps([first, again])
    # a dry run lists the Job and submits nothing
    dry = sweeps.sweep(models[1:], datasets[:1], backend="hf-jobs", dry_run=True,
                       zoo=zoo, edges_repo=EDGES)
    assert dry["runs"][0]["status"] == "dry-run" and len(hub_server.jobs) == 1


# -- bad input: one line, exit code 2 ----------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["--models", "not a repo", "--datasets", "org/photos"], "not a Hub model ID"),
    (["--models", "tiny/sd"], "needs --models and --datasets"),
    (["--models", "tiny/none", "--datasets", "org/photos"], "model tiny/none not found on the Hub"),
    (["--models", "{folder}", "--datasets", "org/photos", "--backend", "hf-jobs"],
     "is a local folder"),
    (["--models", "tiny/sd", "--datasets", "org/photos", "--backend", "hf-jobs",
      "--flavor", "a10g-huge"], "unknown --flavor"),
    (["--models", "tiny/sd", "--datasets", "org/photos", "--backend", "cloud"],
     "unknown --backend"),
    (["--models", "tiny/sd", "--datasets", "org/photos", "--steps", "0"], "--steps"),
    (["--run"], "--run goes with --suggest"),
    (["--models", "tiny/sd", "--datasets", "org/photos", "--backend", "hf-jobs"],
     "needs a Hub token"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, hub_server, hub_root, tmp_path,
                                          monkeypatch, capsys):
    from hubselect.cli.root import main

    hub_inputs(hub_root)
    folder = make_dataset(tmp_path / "folder")
    zoo = efficientnet_zoo(tmp_path / "zoo")
    argv = [a.replace("{folder}", str(folder)) for a in args]
    monkeypatch.setattr(sys, "argv", ["hubselect", "sweep", *argv, "--zoo", str(zoo.path)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2
    assert len(err.splitlines()) == 1 and message in err, err
    assert not hub_server.jobs


# -- --suggest ------------------------------------------------------------------------------

def test_suggest_names_k_distinct_pending_pairs_deterministically(hub_server, tmp_path,
                                                                  monkeypatch):
    zoo = make_synthetic_zoo(n_models=6, n_datasets=10, density=0.7, seed=1).write(
        tmp_path / "zoo")
    measured = set(zip(zoo.read_table("records")["model"],
                       zoo.read_table("records")["dataset"]))
    first = sweeps.suggest(5, zoo=zoo, edges_repo=EDGES, seed=0)
    assert first["method"] == "ensemble" and first["candidates"] == 60 - len(measured)
    pairs = [(s["model"], s["dataset"]) for s in first["suggestions"]]
    assert len(set(pairs)) == 5 and not set(pairs) & measured
    scores = [s["score"] for s in first["suggestions"]]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    assert sweeps.suggest(5, zoo=zoo, edges_repo=EDGES, seed=0) == first

    # a pair someone measured (a record in the edge dataset) is no longer suggested
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)
    model, dataset = pairs[0]
    push_records([make_record(model, dataset, 1.0, metric=zoo.info.metric, probe="x")],
                 repo_id=EDGES)
    after = sweeps.suggest(5, zoo=zoo, edges_repo=EDGES, seed=0)
    assert (model, dataset) not in {(s["model"], s["dataset"]) for s in
                                    after["suggestions"]}
    assert after["candidates"] == first["candidates"] - 1


def disagreement_zoo(path) -> Zoo:
    """``org/steady`` is the best model on every dataset it was measured on (eleven);
    ``org/fickle`` was measured on two, best on one and worst on the other. Neither is
    measured on ``set/d00``: members trained on different halves of the datasets agree
    about the first and not about the second."""
    rng = np.random.default_rng(0)
    datasets = [f"set/d{i:02d}" for i in range(12)]
    others = [f"org/m{j}" for j in range(6)]
    rows = []
    for d in datasets:
        rows += [{"model": m, "dataset": d, "score": q + 0.05 * rng.normal()}
                 for m, q in zip(others, np.linspace(0.2, 0.8, 6))]
        if d != "set/d00":
            rows.append({"model": "org/steady", "dataset": d, "score": 2.0})
    rows += [{"model": "org/fickle", "dataset": "set/d01", "score": 3.0},
             {"model": "org/fickle", "dataset": "set/d02", "score": -1.0}]
    path.mkdir(parents=True)
    atomic_write_json(path / "zoo.json", {"format": 1, "metric": "score",
                                          "higher_is_better": True, "probe": None})
    zoo = Zoo(path)
    models = ["org/steady", "org/fickle", *others]
    zoo.write_table("models", pd.DataFrame({"model": models,
                                            "size": rng.lognormal(0, 1, len(models))}))
    feats = rng.normal(size=(len(datasets), 3))
    table = pd.DataFrame(feats, columns=["f0", "f1", "f2"])
    table.insert(0, "dataset", datasets)
    zoo.write_table("datasets", table)
    zoo.write_table("dataset_distances", pd.DataFrame(
        [{"dataset_a": a, "dataset_b": b, "distance": float(((feats[i] - feats[j]) ** 2).sum())}
         for i, a in enumerate(datasets) for j, b in enumerate(datasets) if i < j]))
    zoo.write_table("records", pd.DataFrame(rows))
    return zoo


def test_suggest_ranks_disagreement_above_agreement(tmp_path):
    zoo = disagreement_zoo(tmp_path / "zoo")
    out = sweeps.suggest(2, zoo=zoo, models=["org/steady", "org/fickle"],
                         datasets=["set/d00"], read_edges=False, seed=0)
    fickle, steady = out["suggestions"]
    assert (fickle["model"], steady["model"]) == ("org/fickle", "org/steady")
    assert fickle["std"] > steady["std"] + 0.1 and fickle["score"] > steady["score"]
    assert steady["predicted_rank"] < 1.5 and steady["p_top"] == 1.0
    best = sweeps.suggest(1, zoo=zoo, models=["org/steady", "org/fickle"],
                          datasets=["set/d00", "unprofiled/set"], read_edges=False)
    assert [s["model"] for s in best["suggestions"]] == ["org/fickle"]
    assert any("unprofiled/set has no profile" in n for n in best["notes"])


def test_one_fit_per_member_predicts_what_match_and_choose_ranks(tmp_path):
    zoo = make_synthetic_zoo(n_models=5, n_datasets=6, seed=2).write(tmp_path / "zoo")
    tables = ZooTables.load(zoo)
    train = tables.records[tables.records["dataset"] != "kind0/ds00"]
    ours = sweeps.member_predictions(tables, train, ["kind0/ds00", "kind1/ds01"], seed=4)
    for target in ("kind0/ds00", "kind1/ds01"):
        theirs = MatchAndChoose(seed=4, blend=1.0).fit(tables.with_records(train)).predict(target)
        assert np.allclose(ours[target], theirs["learned_u"].to_numpy())


def test_cold_start_covers_every_dataset_then_spreads(tmp_path):
    path = tmp_path / "zoo"
    path.mkdir()
    atomic_write_json(path / "zoo.json", {"format": 1, "metric": "clip-fid",
                                          "higher_is_better": False, "probe": "clip"})
    zoo = Zoo(path)
    models = ["org/unknown", "stable-diffusion-v1-5/stable-diffusion-v1-5",
              "stabilityai/stable-diffusion-xl-base-1.0"]
    zoo.write_table("models", pd.DataFrame({"model": models}))
    out = sweeps.suggest(6, zoo=zoo, datasets=["a/x", "a/y"], read_edges=False)
    assert out["method"] == "cold-start"
    got = [(s["model"].split("/")[0], s["dataset"]) for s in out["suggestions"]]
    # the published ranking's best on each dataset, then the least-measured models
    assert got == [("stabilityai", "a/x"), ("stabilityai", "a/y"),
                   ("stable-diffusion-v1-5", "a/x"), ("org", "a/y"),
                   ("org", "a/x"), ("stable-diffusion-v1-5", "a/y")]
    assert all(s["score"] is None for s in out["suggestions"])
