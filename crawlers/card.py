"""What a model card's YAML front matter says about licence, gating and lineage.

Only the card's metadata is read, never its prose. The keys are the Hub's own
(https://huggingface.co/docs/hub/model-cards#model-card-metadata):

* ``license``: an SPDX-like ID (``apache-2.0``, ``openrail++``), or ``other`` with ``license_name``
  (``flux-1-dev-non-commercial-license``) and ``license_link``; the zoo lists the name for ``other``;
* ``extra_gated_*`` (``extra_gated_prompt``, ``extra_gated_fields``, ...): the access form of a gated
  repo; a card that has one is gated even where the Hub's ``gated`` field is not at hand (a local
  folder, an old crawl record);
* ``base_model``: the repo(s) the model was derived from; a card that names its own repo (some
  publishers do) has no base model.
"""

from __future__ import annotations


def _as_list(value) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _text(value) -> str | None:
    """A scalar as text; a list (a card may give several licences) joined with ';'."""
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)):
        return ";".join(str(v) for v in value if v not in (None, "")) or None
    return str(value)


def card_facts(card: dict, model: str | None = None) -> dict:
    """Licence, gating and lineage from a card's parsed YAML (``{}`` for a repo without a card)."""
    card = card or {}
    return {
        "license": _text(card.get("license")),
        "license_name": _text(card.get("license_name")),
        "license_link": _text(card.get("license_link")),
        "gated": any(str(key).startswith("extra_gated_") for key in card),
        "base_model": [str(b) for b in _as_list(card.get("base_model")) if b and b != model],
        "tags": [str(t) for t in _as_list(card.get("tags"))],
        "pipeline_tag": _text(card.get("pipeline_tag")),
    }


def licence_id(facts: dict) -> str | None:
    """The licence the zoo lists: ``license_name`` for ``license: other``, else ``license``."""
    if facts.get("license") == "other" and facts.get("license_name"):
        return facts["license_name"]
    return facts.get("license")


def is_gated(hub_gated, facts: dict) -> bool:
    """Gated on the Hub (``"auto"``/``"manual"``/``True``) or by the card's ``extra_gated_*`` keys."""
    return bool(hub_gated not in (None, False, "false", "False")) or bool(facts.get("gated"))
