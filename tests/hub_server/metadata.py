"""What the endpoint says about a repo beyond its file list, as the Hub would.

From three sources: the files (``model_index.json`` or a ``unet``/``transformer`` config make a diffusers
text-to-image model; ``config.json`` gives ``config``), the README's YAML front matter (``cardData``, tags, language,
license, ``extra_gated_*`` keys make the repo gated "auto") and the sidecar ``ROOT/.meta/<type>s/<org>/<name>.json``
with the keys ``downloads``, ``likes``, ``tags``, ``pipeline_tag``, ``library_name``, ``config``, ``gated``
(false/"auto"/"manual"), ``private``, ``disabled``, ``created_at``, ``last_modified``, ``trending_score``,
``downloads_all_time``, ``description`` (datasets), ``author`` (of the commit that stands for files changed outside
the endpoint). Sidecar values win over derived ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import PurePosixPath
from typing import Any

from tests.hub_server.wire import as_list, iso


@dataclass
class RepoInfo:
    card_data: dict | None
    last_modified: str
    created_at: str
    private: bool
    gated: Any                 # False, "auto" or "manual"
    disabled: bool
    downloads: int
    downloads_all_time: int
    likes: int
    trending_score: int
    tags: list[str]
    pipeline_tag: str | None
    library_name: str | None
    config: dict | None


def describe(repo_type: str, paths: Iterable[str], meta: dict, *, read_json: Callable[[str], Any],
             read_text: Callable[[str], str], newest: float, oldest: float) -> RepoInfo:
    """The repo's info from its file ``paths`` (read with ``read_json``/``read_text``), sidecar ``meta`` and the
    modification times of its newest and oldest file (the dates when the sidecar gives none)."""
    paths = list(paths)
    card = parse_front_matter(read_text("README.md")) if "README.md" in paths else None
    card_d = card or {}

    library_name: str | None = None
    pipeline_tag: str | None = None
    config: dict | None = None
    extra_tags: list[str] = []
    if repo_type == "model":
        model_index = read_json("model_index.json") if "model_index.json" in paths else None
        is_diffusers = "model_index.json" in paths
        for p in paths:
            pp = PurePosixPath(p)
            if pp.name == "config.json" and pp.parent.name in ("unet", "transformer"):
                cfg = read_json(p)
                if isinstance(cfg, dict) and str(cfg.get("_class_name", "")).endswith("Model"):
                    is_diffusers = True
        if isinstance(model_index, dict) and model_index.get("_class_name"):
            config = {"diffusers": {"_class_name": model_index["_class_name"]}}
            extra_tags.append(f"diffusers:{model_index['_class_name']}")
        elif "config.json" in paths:
            cfg = read_json("config.json")
            if isinstance(cfg, dict):
                config = {k: cfg[k] for k in ("architectures", "model_type") if k in cfg} or None
        # the sidecar wins, then the card, then what the files say
        library_name = meta["library_name"] if "library_name" in meta else (
            card_d.get("library_name") or ("diffusers" if is_diffusers else None))
        pipeline_tag = meta["pipeline_tag"] if "pipeline_tag" in meta else (
            card_d.get("pipeline_tag") or ("text-to-image" if is_diffusers else None))
        if "config" in meta:
            config = meta["config"]

    downloads = int(meta.get("downloads", 0) or 0)
    return RepoInfo(
        card_data=card,
        last_modified=_norm_date(meta.get("last_modified", meta.get("lastModified")), newest),
        created_at=_norm_date(meta.get("created_at", meta.get("createdAt")), oldest),
        private=bool(meta.get("private", False)),
        gated=_gated(meta, card_d),
        disabled=bool(meta.get("disabled", False)),
        downloads=downloads,
        downloads_all_time=int(meta.get("downloads_all_time", meta.get("downloadsAllTime", downloads)) or 0),
        likes=int(meta.get("likes", 0) or 0),
        trending_score=int(meta.get("trending_score", meta.get("trendingScore", 0)) or 0),
        tags=_tags(repo_type, library_name, extra_tags, card_d, meta, pipeline_tag),
        pipeline_tag=pipeline_tag,
        library_name=library_name,
        config=config,
    )


def _tags(repo_type: str, library_name: str | None, extra_tags: list[str], card_d: dict, meta: dict,
          pipeline_tag: str | None) -> list[str]:
    """The tags in the Hub's order: library, derived, card, sidecar, pipeline tag, then ``key:value`` tags."""
    tags: list[str] = []

    def add(tag: Any) -> None:
        if tag is None or tag == "" or isinstance(tag, (dict, list)):
            return
        tag = str(tag)
        if tag not in tags:
            tags.append(tag)

    add(library_name)
    for t in [*extra_tags, *as_list(card_d.get("tags")), *as_list(meta.get("tags"))]:
        add(t)
    add(pipeline_tag)
    if repo_type == "dataset":
        for key in ("task_categories", "task_ids", "size_categories", "language", "multilinguality"):
            for v in as_list(card_d.get(key)):
                add(f"{key}:{v}")
    else:
        for v in as_list(card_d.get("language")):
            add(v)
        for v in as_list(card_d.get("datasets")):
            add(f"dataset:{v}")
        for v in as_list(card_d.get("base_model")):
            add(f"base_model:{v}")
    for v in as_list(card_d.get("license")):
        add(f"license:{v}")
    return tags


def _gated(meta: dict, card_d: dict) -> Any:
    gated = meta.get("gated", False)
    if "gated" not in meta and any(str(k).startswith("extra_gated_") for k in card_d):
        gated = "auto"   # a card that configures the access form (extra_gated_*) stands for a gated repo
    if gated is True:
        gated = "auto"
    return gated if gated in ("auto", "manual") else False


def _norm_date(value: Any, fallback: float) -> str:
    """Sidecar dates may be ISO strings or epoch numbers; answer the Hub's `...T..:..:..(.fff)Z` format."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return iso(float(value))
    if isinstance(value, str) and value:
        try:
            d = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        if d.tzinfo is None:
            d = d.replace(tzinfo=timezone.utc)
        return iso(d.timestamp())
    return iso(fallback)


# -- README front matter -------------------------------------------------------------------------------------------


def _load_front_matter(text: str) -> tuple[Any, str | None]:
    """(the YAML between the README's leading ``---`` lines, None), or (None, why it is not YAML);
    (None, None) when there is no such block."""
    lines = text.splitlines()
    if not text.startswith("---") or lines[0].strip() != "---":
        return None, None
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            import yaml  # PyYAML, a dependency of the project

            try:
                return yaml.safe_load("\n".join(lines[1:i])), None
            except yaml.YAMLError as e:
                return None, f"Invalid YAML in README.md metadata: {e}"
    return None, None


def parse_front_matter(text: str) -> dict | None:
    """The README's card data (None when absent or not a YAML mapping)."""
    data, _ = _load_front_matter(text)
    return data if isinstance(data, dict) else None


def front_matter_error(text: str) -> str | None:
    """Why a README's front matter is refused (for /api/validate-yaml); None when it is fine or absent."""
    data, error = _load_front_matter(text)
    if error is None and data is not None and not isinstance(data, dict):
        return "README.md metadata must be a YAML mapping"
    return error
