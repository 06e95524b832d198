"""``hubselect finetune``: train, score, record in the zoo, and optionally publish.

Every run writes its record (and the dataset's profile, when the zoo has none) into the local
zoo; ``push=True`` also publishes the adapter and the record (see :mod:`hubselect.finetune.publish`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hubselect.errors import HubError, UserError
from hubselect.finetune.trainer import FinetuneConfig, FinetuneResult, Trainer


def zoo_probe(zoo, probe: str | None = None) -> str:
    """The probe to score with: the zoo's (its records are all in one metric), or the one asked for when
    it records the zoo's metric."""
    from hubselect.finetune.scoring import metric_name
    from hubselect.profile.probes import resolve_probe

    info = zoo.info
    chosen = resolve_probe(probe, info.probe)
    if metric_name(chosen) != info.metric:
        raise UserError(f"zoo {zoo.path} ranks by {info.metric}; --probe {chosen} would record "
                        f"{metric_name(chosen)} (use --probe {info.probe} or another --zoo)")
    return chosen


def _dataset_profile(zoo, trainer: Trainer, probe: str):
    """The zoo's profile of the dataset, computed and added when it has none."""
    from hubselect.profile.profiles import add_profile_to_zoo, load_profile, profile_dataset

    data = trainer.source
    profile = load_profile(zoo, data.dataset, probe)
    if profile is None:
        cfg = trainer.config
        profile = profile_dataset(cfg.dataset, probe=probe, image_column=cfg.image_column,
                                  caption_column=cfg.caption_column, split=cfg.split)
        add_profile_to_zoo(zoo, profile)
    return profile


def _ensure_model_in_zoo(zoo, trainer: Trainer) -> str | None:
    """Crawl the model into the zoo when it is not there (configs only), so that its record ranks.
    Returns a note when that was not possible; the record is kept either way."""
    from hubselect.crawlers.crawl import crawl

    resolved = trainer.resolved
    models = zoo.read_table("models")
    if models is not None and resolved.name in set(models["model"]):
        return None
    source = resolved.repo_id or str(resolved.local_dir)
    summary = crawl([source], zoo, include_pinned=False)
    if resolved.name not in set(zoo.read_table("models")["model"]):
        return f"{resolved.name} could not be added to the zoo's models ({summary.to_dict()}); " \
               "its record is kept but cannot rank until it is crawled"
    return None


def finetune(config: FinetuneConfig, *, zoo=None, push: bool = False, adapter_repo: str | None = None,
             edges_repo: str | None = None, run_dir: str | Path | None = None, checkpoint_every: int = 500,
             progress: Callable[[int, int, float], None] | None = None,
             sample_progress: Callable[[str, int, int], None] | None = None,
             on_step: Callable[[int, float], None] | None = None) -> dict:
    """Fine-tune ``config.model`` on ``config.dataset``; returns the result (what ``--json`` prints).

    ``config.probe`` None-like values are resolved against the zoo. Everything the user can get
    wrong (model, dataset, probe, token) is checked before training starts.
    """
    from hubselect.share.push import check_pushable, push_records
    from hubselect.share.records import edges_repo as checked_edges_repo, record_id
    from hubselect.share.sync import add_records_to_zoo
    from hubselect.share.trust import LOCAL_WRITER, writer_of
    from hubselect.hub import HubClient
    from hubselect.zoo.format import Zoo

    named_zoo = zoo
    zoo = zoo if isinstance(zoo, Zoo) else Zoo.open(zoo)
    config.probe = zoo_probe(zoo, config.probe)
    trainer = Trainer(config, run_dir=Path(run_dir) if run_dir else None, progress=progress,
                      sample_progress=sample_progress, on_step=on_step,
                      checkpoint_every=checkpoint_every)
    trainer.prepare()
    client = None
    if push:
        from hubselect.finetune.publish import check_push_access
        edges_repo = checked_edges_repo(edges_repo)
        check_pushable(trainer.resolved.name, trainer.source.dataset)   # names the edge dataset would refuse
        client = HubClient()
        adapter_repo = check_push_access(client, adapter_repo, trainer.resolved.name, trainer.source.dataset)

    result: FinetuneResult = trainer.run()
    if not result.main_process:
        return result.to_dict()
    record = dict(result.record)
    local_id = record_id(record)
    if named_zoo is None:   # no zoo named: the result goes to the user's zoo, never the shipped one
        zoo = Zoo.open(None, write=True)
    profile = _dataset_profile(zoo, trainer, config.probe)
    out = result.to_dict()
    note = _ensure_model_in_zoo(zoo, trainer)
    out["notes"] = [note] if note else []
    if push:
        from hubselect.finetune.publish import adapter_card, push_adapter
        record["adapter_repo"] = adapter_repo
        hyper = {k: record.get(k) for k in ("family", "steps", "batch_size", "lr", "rank", "seed", "resolution",
                                            "train_samples", "val_samples", "sample_steps")}
        card = adapter_card(record, hyper, result.scores, result.initial_scores)
        out["adapter_commit"] = push_adapter(client, adapter_repo, result.adapter_dir, card)
        out["pushed_records"] = push_records([record], repo_id=edges_repo, client=client, profiles=[profile])
        out["edges_repo"] = edges_repo
        out["adapter_repo"] = adapter_repo
    # the writer a sync would find for the pushed record (the Hub commit's author); "local" for one kept here
    writer = LOCAL_WRITER
    if push:
        try:
            writer = writer_of([client.whoami().get("name")]) or LOCAL_WRITER
        except HubError:
            pass
    add_records_to_zoo(zoo, [record], source="local" if not push else f"hub:{edges_repo}",
                       replaces=[local_id] if record_id(record) != local_id else [], writer=writer)
    out["record"] = record
    out["record_id"] = record_id(record)
    out["zoo"] = str(zoo.path)
    return out
