"""The crawler against the local Hub endpoint: real client, real HTTP, real diffusers classes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from hubselect.crawlers.crawl import crawl, record_path
from hubselect.hub import HubClient
from hubselect.zoo.format import Zoo
from tests import cli_helpers
from tests.hub_server import make_repo
from tests.tiny_pipelines import FAMILIES, checkpoint_numel, write_pipeline

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".gguf", ".onnx")
CARD = """---
license: apache-2.0
base_model: acme/base
tags:
- text-to-image
- lora-ready
---
# A tiny pipeline
"""


def fast_client(url: str, token: str | None = None) -> HubClient:
    return HubClient(endpoint=url, token=token, retries=2, backoff=0.01, timeout=1.0)


def table2() -> dict[str, float]:
    """Denoiser params (G) by Hub repo, as the paper's Table 2 publishes them."""
    table = pd.read_csv(Path(__file__).parent / "data" / "paper_table2_denoiser_params.csv", comment="#")
    return dict(zip(table["model"], table["denoiser_params_g"].astype(float)))


def fixture_repo_ids(root: Path) -> list[str]:
    return sorted(f"{p.parent.name}/{p.name}" for p in (root / "models").glob("*/*") if p.is_dir())


def diffusers_state_dict_count(config: dict) -> int:
    """Independent count: diffusers' own class from the config, its state dict's tensor sizes."""
    import diffusers
    cls = getattr(diffusers, config["_class_name"])
    with torch.device("meta"):
        model = cls.from_config(config)
    return sum(t.numel() for t in model.state_dict().values())


# -- the paper's pipelines --------------------------------------------------------------------------

def test_fixture_pipelines_match_table2_and_fetch_no_weights(fixture_hub, tmp_path):
    reference = table2()
    root = Path(fixture_hub.root)
    repos = fixture_repo_ids(root)
    zoo = Zoo.open(tmp_path / "zoo", create=True)
    # FLUX.1-dev and SD 3.5 medium are gated (their cards' extra_gated_* keys): a token with access
    client = fast_client(fixture_hub.url, token="hf_read")
    summary = crawl(repos, zoo, client=client)
    assert summary.skipped == {} and sorted(summary.crawled) == repos

    # Kolors' original repo stands in for Kolors-diffusers (same UNet; see PROVENANCE.md).
    aliases = {"Kwai-Kolors/Kolors": "Kwai-Kolors/Kolors-diffusers"}
    for repo in repos:
        rec = json.loads(record_path(zoo, repo).read_text())
        den_name = next(n for n, c in rec["components"].items() if c["role"] == "denoiser")
        own = diffusers_state_dict_count(rec["configs"][den_name])
        published = reference[aliases.get(repo, repo)] * 1e9
        assert rec["params_denoiser"] == own, repo
        assert abs(rec["params_denoiser"] / published - 1) < 0.01, (repo, rec["params_denoiser"], published)
        assert rec["flops"]["denoiser_forward"] > 0

    kolors = json.loads(record_path(zoo, "Kwai-Kolors/Kolors").read_text())
    assert kolors["components"]["text_encoder"]["status"] == "unresolvable"   # ChatGLM: not guessed
    pixart = json.loads(record_path(zoo, "PixArt-alpha/PixArt-Sigma-XL-2-512-MS").read_text())
    assert pixart["denoiser_class"] == "PixArtTransformer2DModel"              # legacy Transformer2DModel
    assert pixart["flops"]["complete"] is False                                # no VAE config in the repo
    # neither repo is a loadable pipeline itself: the class it really is, and what loads it
    assert (pixart["pipeline_class"], pixart["loadable"]["loadable_repo"]) == \
        ("PixArtSigmaPipeline", "PixArt-alpha/pixart_sigma_sdxlvae_T5_diffusers")
    assert (kolors["pipeline_class"], kolors["pipeline_class_declared"], kolors["loadable"]["loadable_repo"]) == \
        ("KolorsPipeline", "StableDiffusionXLPipeline", "Kwai-Kolors/Kolors-diffusers")

    resolved = fixture_hub.resolved_files()
    assert resolved and not [p for _, p in resolved if p.endswith(WEIGHT_SUFFIXES)]
    # Second run: every sha unchanged, so not one file is fetched again.
    again = crawl(repos, zoo, client=client)
    assert sorted(again.unchanged) == repos and again.crawled == []
    assert fixture_hub.resolved_files() == resolved


# -- any pipeline, any name -------------------------------------------------------------------------

@pytest.fixture
def tiny_hub(hub_server):
    """Four tiny pipelines with real safetensors on the endpoint, plus a non-T2I repo."""
    root = Path(hub_server.root)
    downloads = {"sd": 40, "sdxl": 30, "sd3": 20, "flux": 10}
    for family in downloads:
        comps, index = FAMILIES[family]()
        repo_id = f"someone/tiny-{family}-pipe"
        write_pipeline(root / "models" / repo_id, comps, index, card=CARD)
        make_repo(root, repo_id, {}, meta={"downloads": downloads[family], "likes": 1})
    make_repo(root, "someone/text-model", {"config.json": json.dumps({"model_type": "bert"})},
              meta={"downloads": 1000, "pipeline_tag": "fill-mask", "library_name": "transformers"})
    return hub_server


def test_default_crawl_lists_t2i_by_downloads_and_never_fetches_weights(tiny_hub, tmp_path):
    zoo = Zoo.open(tmp_path / "zoo", create=True)
    summary = crawl(None, zoo, limit=3, include_pinned=False, client=fast_client(tiny_hub.url))
    assert summary.crawled == ["someone/tiny-sd-pipe", "someone/tiny-sdxl-pipe", "someone/tiny-sd3-pipe"]
    root = Path(tiny_hub.root)
    for repo in summary.crawled:
        rec = json.loads(record_path(zoo, repo).read_text())
        for name, comp in rec["components"].items():
            if comp["status"] == "counted":
                assert comp["params"] == checkpoint_numel(root / "models" / repo / name), (repo, name)
        assert rec["card"]["license"] == "apache-2.0" and rec["card"]["base_model"] == ["acme/base"]
        assert rec["hub"]["downloads"] > 0 and rec["sha"] == tiny_hub.repo_sha(repo)
    assert not [p for _, p in tiny_hub.resolved_files() if p.endswith(WEIGHT_SUFFIXES)]
    info = zoo.read_table("model_info")
    assert set(info["model"]) == set(summary.crawled) and (info["license"] == "apache-2.0").all()
    models = zoo.read_table("models")
    assert list(models["model"]) == sorted(summary.crawled) and models.shape[1] > 10


def test_local_folder_is_crawled_like_a_repo(tiny_hub, tmp_path):
    zoo = Zoo.open(tmp_path / "zoo", create=True)
    crawl(["someone/tiny-sd3-pipe"], zoo, client=fast_client(tiny_hub.url))
    local = Path(tiny_hub.root) / "models" / "someone" / "tiny-sd3-pipe"
    crawl([str(local)], zoo)
    hub_rec = json.loads(record_path(zoo, "someone/tiny-sd3-pipe").read_text())
    local_rec = json.loads(record_path(zoo, "tiny-sd3-pipe").read_text())
    assert local_rec["source"] == "local"
    for key in ("params_denoiser", "params_total", "flops", "pipeline_class"):
        assert local_rec[key] == hub_rec[key]


def test_new_model_maps_into_the_persisted_feature_space(tiny_hub, tmp_path):
    zoo = Zoo.open(tmp_path / "zoo", create=True)
    crawl(["someone/tiny-sd-pipe", "someone/tiny-sd3-pipe"], zoo, client=fast_client(tiny_hub.url))
    before = zoo.read_table("models")
    crawl(["someone/tiny-flux-pipe"], zoo, client=fast_client(tiny_hub.url))
    after = zoo.read_table("models")
    assert list(after.columns) == list(before.columns)
    assert "someone/tiny-flux-pipe" in set(after["model"])
    old = after[after.model.isin(before.model)].reset_index(drop=True)
    assert old.equals(before)


# -- faults -----------------------------------------------------------------------------------------

def _snapshot(zoo: Zoo) -> dict[str, bytes]:
    return {p.relative_to(zoo.path).as_posix(): p.read_bytes()
            for p in sorted(zoo.path.rglob("*")) if p.is_file()}


FAULTS = [
    # (kind, path_glob, times, expected reason prefix)
    ("500", None, None, "server_error"),
    ("503", "unet/config.json", None, "server_error"),
    ("timeout", None, None, "timeout"),
    ("401", None, None, "gated"),
    ("403", None, None, "gated"),
    ("404", None, None, "not_found"),
    ("404", "unet/config.json", None, "not_found"),
    ("malformed_json", "model_index.json", None, "malformed_json"),
    ("malformed_json", None, None, "malformed_json"),
]


@pytest.mark.parametrize("kind,glob,times,reason", FAULTS, ids=[f"{f[0]}-{f[1] or 'api'}" for f in FAULTS])
def test_fault_is_a_recorded_skip_and_leaves_the_zoo_intact(tiny_hub, tmp_path, kind, glob, times, reason):
    client = fast_client(tiny_hub.url)
    zoo = Zoo.open(tmp_path / "zoo", create=True)
    crawl(["someone/tiny-sd-pipe", "someone/tiny-sdxl-pipe"], zoo, client=client)
    # A new commit on one repo, then the Hub misbehaves for it.
    make_repo(tiny_hub.root, "someone/tiny-sd-pipe", {"unet/notes.txt": "v2"})
    before = _snapshot(zoo)
    tiny_hub.inject(kind, repo_id="someone/tiny-sd-pipe", path_glob=glob, times=times)
    summary = crawl(["someone/tiny-sd-pipe", "someone/tiny-sdxl-pipe", "someone/tiny-sd3-pipe"], zoo,
                    client=client)
    assert summary.skipped.get("someone/tiny-sd-pipe", "").startswith(reason), summary.skipped
    assert summary.crawled == ["someone/tiny-sd3-pipe"] and summary.unchanged == ["someone/tiny-sdxl-pipe"]
    after = _snapshot(zoo)
    # The earlier good record of the faulted repo is kept byte for byte.
    for name in ("crawl/someone--tiny-sd-pipe.json", "crawl/someone--tiny-sdxl-pipe.json"):
        assert after[name] == before[name]
    assert "someone/tiny-sd3-pipe" in set(zoo.read_table("models")["model"])


def test_transient_fault_is_retried_and_succeeds(tiny_hub, tmp_path):
    zoo = Zoo.open(tmp_path / "zoo", create=True)
    tiny_hub.inject("503", repo_id="someone/tiny-sd-pipe", times=2)
    summary = crawl(["someone/tiny-sd-pipe"], zoo, client=fast_client(tiny_hub.url))
    assert summary.crawled == ["someone/tiny-sd-pipe"] and summary.skipped == {}


def test_new_failing_repo_is_recorded_with_its_reason(tiny_hub, tmp_path):
    make_repo(tiny_hub.root, "someone/broken", {"model_index.json": json.dumps(
        {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]})})
    make_repo(tiny_hub.root, "someone/custom-code", {
        "model_index.json": json.dumps({"_class_name": "MyPipeline", "unet": ["my_pkg", "MyUNet"]}),
        "unet/config.json": json.dumps({"_class_name": "MyUNet", "sample_size": 64})})
    zoo = Zoo.open(tmp_path / "zoo", create=True)
    summary = crawl(["someone/broken", "someone/custom-code", "someone/missing"], zoo,
                    client=fast_client(tiny_hub.url))
    assert summary.skipped["someone/broken"].startswith("missing_denoiser")
    assert summary.skipped["someone/custom-code"].startswith("denoiser_unresolvable")
    assert summary.skipped["someone/missing"].startswith("not_found")
    rec = json.loads(record_path(zoo, "someone/broken").read_text())
    assert rec["status"] == "skipped" and rec["reason"] == summary.skipped["someone/broken"]


# -- the command line -------------------------------------------------------------------------------

def run_cli(*args: str, env: dict | None = None):
    """The command line with fast retries, so fault tests stay short."""
    fast = {"HUBSELECT_HUB_RETRIES": "1", "HUBSELECT_HUB_BACKOFF": "0.01", "HUBSELECT_HUB_TIMEOUT": "1"}
    return cli_helpers.run_cli(*args, env={**fast, **(env or {})}, timeout=300)


def test_cli_crawl_with_fault_exits_0_with_summary(tiny_hub, tmp_path):
    zoo_dir = tmp_path / "zoo"
    tiny_hub.inject("503", repo_id="someone/tiny-sdxl-pipe")
    res = run_cli("crawl", "someone/tiny-sd-pipe", "someone/tiny-sdxl-pipe", "--zoo", str(zoo_dir))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "crawled 1, unchanged 0, skipped 1"
    assert "skipped someone/tiny-sdxl-pipe: server_error" in res.stderr
    listing = json.loads(run_cli("zoo", "--zoo", str(zoo_dir), "--json").stdout)
    assert [r["model"] for r in listing] == ["someone/tiny-sd-pipe"]
    row = listing[0]
    assert {"model", "params_denoiser", "params_total", "tflops_per_image", "license", "records"} <= set(row)
    assert row["license"] == "apache-2.0" and row["records"] == 0 and row["params_denoiser"] > 0


@pytest.mark.parametrize("args,needle", [
    (["crawl", "not a repo!"], "neither a local folder nor a Hub repo ID"),
    (["crawl", "--limit", "0"], "--limit"),
    (["crawl", "--limit", "many"], "--limit"),
    (["zoo", "--zoo", "/nonexistent/zoo"], "no zoo at"),
    (["zoo", "--bogus"], "No such option"),
    (["nosuchcommand"], "No such command"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, needle):
    res = run_cli(*args, env={"HUBSELECT_ZOO": str(tmp_path / "z")})
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in res.stderr


def test_crawl_checks_its_arguments_and_files_before_writing(tmp_path):
    new = tmp_path / "new-zoo"
    res = cli_helpers.run_cli("crawl", "not a repo!", "--zoo", str(new))
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1 and not new.exists()
    # a local pipeline folder whose model_index.json is not UTF-8 is skipped with the reason, no traceback
    folder = tmp_path / "pipe"
    folder.mkdir()
    (folder / "model_index.json").write_bytes(b"\xff\xfe\x00{}")
    res = cli_helpers.run_cli("crawl", str(folder), "--zoo", str(tmp_path / "zoo"), "--json")
    assert res.returncode == 0 and "Traceback" not in res.stderr
    assert "not_utf8: model_index.json" in json.dumps(json.loads(res.stdout))
    # a truncated crawl record in the zoo is one line naming it, and nothing is written
    zoo = tmp_path / "copy"
    shutil.copytree(Path(__file__).resolve().parents[1] / "zoo_cache", zoo)
    record = sorted((zoo / "crawl").glob("*.json"))[0]
    record.write_bytes(record.read_bytes()[:200])
    before = {p: p.read_bytes() for p in zoo.rglob("*") if p.is_file()}
    res = cli_helpers.run_cli("crawl", str(folder), "--zoo", str(zoo))
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and record.name in lines[0]
    assert {p: p.read_bytes() for p in zoo.rglob("*") if p.is_file()} == before
