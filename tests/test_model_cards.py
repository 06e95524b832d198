"""Model cards: licence, gated flag and base model, from the fixture cards to the shipped zoo.

The fixture repos' README.md files hold their Hub cards' YAML front matter (hub_fixtures/models/
PROVENANCE.md). Each test reads the expected facts from those files with PyYAML, independently of
the crawler (which reads cards through huggingface_hub's RepoCard).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import GatedRepoError

from hubselect.crawlers.card import card_facts, is_gated, licence_id
from hubselect.crawlers.crawl import crawl, record_path
from hubselect.hub import HubClient
from hubselect.zoo.format import Zoo
from tests.cli_helpers import run_cli
from tests.conftest import HUB_FIXTURES

REPO = Path(__file__).resolve().parents[1]
SHIPPED_ZOO = REPO / "zoo_cache"


def fixture_repos() -> list[str]:
    return sorted(f"{p.parent.name}/{p.name}" for p in (HUB_FIXTURES / "models").glob("*/*") if p.is_dir())


def expected_card(repo: str) -> dict:
    """What the fixture card says: licence (the name for `other`), gated, base models other than itself."""
    readme = HUB_FIXTURES / "models" / repo / "README.md"
    if not readme.is_file():
        return {"license": None, "gated": False, "base_model": []}
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("---\n") and text.rstrip().endswith("---"), f"{readme}: YAML front matter only"
    data = yaml.safe_load(text.split("---")[1]) or {}
    lic = data.get("license")
    bases = data.get("base_model") or []
    return {"license": data.get("license_name") if lic == "other" else lic,
            "gated": any(k.startswith("extra_gated_") for k in data),
            "base_model": [b for b in ([bases] if isinstance(bases, str) else bases) if b != repo]}


CARDS = {repo: expected_card(repo) for repo in fixture_repos()}


def test_fixture_cards_are_front_matter_only_and_most_name_a_licence():
    with_card = [r for r in CARDS if (HUB_FIXTURES / "models" / r / "README.md").is_file()]
    assert len(with_card) >= 7
    assert sum(CARDS[r]["license"] is not None for r in CARDS) >= 6
    for repo in with_card:
        text = (HUB_FIXTURES / "models" / repo / "README.md").read_text(encoding="utf-8")
        assert text.count("---\n") == 2 and text.endswith("---\n"), repo    # no card prose after the YAML
    assert CARDS["black-forest-labs/FLUX.1-dev"] == {
        "license": "flux-1-dev-non-commercial-license", "gated": True, "base_model": []}
    assert CARDS["stabilityai/stable-diffusion-xl-base-1.0"]["license"] == "openrail++"


def test_card_facts_read_licence_gating_and_lineage():
    card = {"license": "other", "license_name": "acme-nc", "license_link": "LICENSE.md",
            "extra_gated_prompt": "...", "base_model": ["org/self", "org/base"], "tags": "t2i"}
    facts = card_facts(card, "org/self")
    assert licence_id(facts) == "acme-nc" and facts["license_link"] == "LICENSE.md"
    assert facts["gated"] is True and facts["base_model"] == ["org/base"] and facts["tags"] == ["t2i"]
    plain = card_facts({"license": "mit", "base_model": "org/base"}, "org/m")
    assert licence_id(plain) == "mit" and plain["gated"] is False and plain["base_model"] == ["org/base"]
    assert licence_id(card_facts({}, "org/m")) is None
    assert is_gated("manual", plain) and is_gated(False, facts) and not is_gated(False, plain)


def test_gated_appears_in_model_info_when_the_card_declares_it(fixture_hub):
    api = HfApi()
    for repo, card in CARDS.items():
        assert bool(api.model_info(repo).gated) == card["gated"], repo
    assert api.model_info("black-forest-labs/FLUX.1-dev").gated == "auto"
    with pytest.raises(GatedRepoError):
        hf_hub_download("black-forest-labs/FLUX.1-dev", "model_index.json", token=False)
    assert Path(hf_hub_download("black-forest-labs/FLUX.1-dev", "model_index.json", token="hf_read")).is_file()


def test_crawled_licence_gated_and_base_model_equal_the_cards(fixture_hub, tmp_path):
    zoo = Zoo.open(tmp_path / "zoo", create=True)
    client = HubClient(endpoint=fixture_hub.url, token="hf_read", retries=1, backoff=0.01, timeout=5.0)
    summary = crawl(fixture_repos(), zoo, client=client)
    assert summary.skipped == {}
    info = zoo.read_table("model_info").set_index("model")
    for repo, card in CARDS.items():
        row = info.loc[repo]
        assert (None if row["license"] != row["license"] else row["license"]) == card["license"], repo
        assert bool(row["gated"]) == card["gated"], repo
        base = row["base_model"] if isinstance(row["base_model"], str) else ""
        assert [b for b in base.split(";") if b] == card["base_model"], repo
        rec = json.loads(record_path(zoo, repo).read_text())
        assert rec["card"]["gated"] == card["gated"] and rec["hub"]["gated"] == ("auto" if card["gated"] else False)

    # without a token the gated repos cannot be read: skipped with that reason, the rest crawled
    anon = HubClient(endpoint=fixture_hub.url, token=None, retries=1, backoff=0.01, timeout=5.0)
    fresh = Zoo.open(tmp_path / "anon", create=True)
    skipped = crawl(fixture_repos(), fresh, client=anon).skipped
    assert sorted(skipped) == sorted(r for r, c in CARDS.items() if c["gated"])
    assert all(reason.startswith("gated") for reason in skipped.values())


def test_shipped_zoo_lists_each_cards_licence():
    info = Zoo.open(SHIPPED_ZOO).read_table("model_info").set_index("model")
    shipped = [r for r in CARDS if r in info.index]
    assert len(shipped) == len(info) == len(CARDS)
    listing = {r["model"]: r for r in json.loads(run_cli("zoo", "--zoo", str(SHIPPED_ZOO), "--json").stdout)}
    for repo in shipped:
        assert listing[repo]["license"] == CARDS[repo]["license"], repo
        assert bool(listing[repo]["gated"]) == CARDS[repo]["gated"], repo
    named = [r for r in shipped if CARDS[r]["license"]]
    assert len(named) >= 6
    # the two repos that are not loadable pipelines themselves say what loads them
    assert listing["Kwai-Kolors/Kolors"]["pipeline_class"] == "KolorsPipeline"
    assert listing["Kwai-Kolors/Kolors"]["loadable_repo"] == "Kwai-Kolors/Kolors-diffusers"
    assert listing["PixArt-alpha/PixArt-Sigma-XL-2-512-MS"]["pipeline_class"] == "PixArtSigmaPipeline"
