"""Publishing a fine-tuning run: the adapter to a Hub model repo, the record to the shared edge dataset.

Order matters for "no partial record": write access is checked before training starts
(:func:`check_push_access`); after training the adapter is committed first (one commit: weights +
card), and the record, which names the adapter repo, is pushed last. When the adapter push fails,
no record is pushed; when the record push fails, the adapter stays (a later ``--push`` of the same
finished run pushes the record without training again).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from hubselect.errors import HubError, HubUnauthorized, UserError, hub_user_error
from hubselect.hub import HubClient, check_repo_id, is_repo_id

CARD_TAGS = ["text-to-image", "diffusers", "lora", "diffusers-training", "hubselect", "template:sd-lora"]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text.split("/")[-1]).strip("-.")[:40] or "model"


def default_adapter_repo(user: str, model: str, dataset: str) -> str:
    """``<user>/<model>-<dataset>-lora`` (names shortened to keep the ID readable)."""
    return f"{user}/{_slug(model)}-{_slug(dataset)}-lora"


def require_write_token(client: HubClient, what: str) -> str:
    """The token's user name, after checking that the token can write; :class:`UserError` if not.
    ``what`` names the option that needs it (``--push``, ``--backend hf-jobs``)."""
    missing = f"{what} needs a Hub token with write access: set HF_TOKEN or run `hf auth login`"
    if not client.token:
        raise UserError(missing)
    try:
        who = client.whoami()
    except HubError as exc:
        if isinstance(exc, HubUnauthorized):
            raise UserError(f"{missing} (the Hub refused this one)") from None
        raise UserError(f"{what}: cannot check the token: {exc}") from None
    if who.get("role") not in (None, "write", "admin", "fineGrained"):
        raise UserError(f"{what}: the token of {who.get('name')} is {who.get('role')}-only; "
                        "a token with write access is needed")
    return who["name"]


def check_push_access(client: HubClient, adapter_repo: str | None, model: str, dataset: str) -> str:
    """The adapter repo ID to push to, after checking that the token can write; :class:`UserError` if not."""
    if adapter_repo is not None:
        check_repo_id(adapter_repo, "--adapter-repo")
    user = require_write_token(client, "--push")
    return adapter_repo or default_adapter_repo(user, model, dataset)


def adapter_card(record: dict, hyperparameters: dict, scores: dict, initial_scores: dict) -> str:
    """A model card whose YAML names base_model (so the Hub lists the adapter under its base model),
    the dataset, the metrics (model-index) and the hyperparameters."""
    model, dataset = record["model"], record["dataset"]
    metric = record["metric"]
    meta: dict = {"library_name": "diffusers", "pipeline_tag": "text-to-image",
                  "tags": [*CARD_TAGS, hyperparameters.get("family", "")]}
    if is_repo_id(model):
        meta["base_model"] = model
    if is_repo_id(dataset):
        meta["datasets"] = [dataset]
    meta["tags"] = [t for t in meta["tags"] if t]
    metrics = [{"type": metric, "name": metric.upper(), "value": round(float(scores["fid"]), 6)},
               {"type": f"{record['probe']}-kid", "name": "KID", "value": round(float(scores["kid"]), 8)},
               {"type": f"{record['probe']}-cmmd", "name": "CMMD", "value": round(float(scores["cmmd"]), 6)}]
    meta["model-index"] = [{"name": f"{_slug(model)}-{_slug(dataset)}-lora", "results": [{
        "task": {"type": "text-to-image", "name": "Text-to-image fine-tuning"},
        "dataset": {"name": dataset, "type": dataset, **({"revision": record["dataset_revision"]}
                                                         if record.get("dataset_revision") else {})},
        "metrics": metrics}]}]
    rows = "\n".join(f"| {k} | {v} |" for k, v in hyperparameters.items())
    lower = "lower is better"
    return f"""---
{yaml.safe_dump(meta, sort_keys=False).strip()}
---

# LoRA of {model} on {dataset}

A LoRA adapter for the denoiser of [{model}](https://huggingface.co/{model}), trained with
[hubselect](https://pypi.org/project/hubselect/) `finetune` on `{dataset}`
(revision `{record.get('dataset_revision') or 'local'}`). Base model commit: `{record.get('model_sha') or 'local'}`.

## Scores on the validation split ({record.get('val_samples', '?')} images, {lower})

| metric | before fine-tuning | after |
|---|---|---|
| {metric} (FID in the {record['probe']} probe's space) | {initial_scores['fid']:.4f} | {scores['fid']:.4f} |
| KID | {initial_scores['kid']:.6f} | {scores['kid']:.6f} |
| CMMD | {initial_scores['cmmd']:.4f} | {scores['cmmd']:.4f} |

## Hyperparameters

| setting | value |
|---|---|
{rows}

## Use

```python
from diffusers import DiffusionPipeline

pipe = DiffusionPipeline.from_pretrained("{model}")
pipe.load_lora_weights("<this repo>")
```
"""


def push_adapter(client: HubClient, repo_id: str, adapter_dir: Path, card: str) -> str:
    """Create the model repo (if needed) and commit the adapter weights and card at once; returns the commit."""
    files = {p.name: p.read_bytes() for p in sorted(Path(adapter_dir).iterdir())
             if p.is_file() and p.suffix == ".safetensors"}
    if not files:
        raise UserError(f"{adapter_dir}: no adapter weights to push")
    files["README.md"] = card.encode()
    try:
        client.create_repo(repo_id, repo_type="model", exist_ok=True)
        return client.upload_files(repo_id, files, repo_type="model", message="Upload LoRA adapter (hubselect)")
    except HubError as exc:
        raise hub_user_error(exc, f"adapter repo {repo_id}", write=True) from None
