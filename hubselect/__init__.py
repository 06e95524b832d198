"""hubselect: which pretrained text-to-image pipeline on the Hub should you fine-tune on your dataset?

The package follows the data, one folder per stage: ``zoo`` (the models and what is known of
them) → ``profile`` (a dataset's probe profile and its distances) → ``rank`` (the estimator and
the ranking) → ``evaluate``; ``finetune``, ``share`` (the shared edge dataset) and ``sweep`` add
records; ``refresh`` keeps the shipped zoo current; ``cli`` is the command line.

The Python API mirrors the command line::

    import hubselect
    ranking = hubselect.rank("user/my-dataset", top=5)      # -> hubselect.Ranking
    for m in ranking.models:
        print(m.rank, m.model, m.score, m.confidence, m.source)
"""

from hubselect import _compat

__version__ = "0.1.0"

__all__ = ["rank", "Ranking", "RankedModel", "Zoo", "crawl", "list_models"]

_compat.install()


def __getattr__(name):
    # Lazy: `import hubselect` stays cheap (no torch, no catboost) until something is used.
    if name in ("rank", "Ranking", "RankedModel"):
        import hubselect.rank
        return hubselect.rank if name == "rank" else getattr(hubselect.rank, name)
    if name == "Zoo":
        from hubselect.zoo import Zoo
        return Zoo
    if name == "crawl":
        from hubselect.crawlers.crawl import crawl
        return crawl
    if name == "list_models":
        from hubselect.zoo.listing import list_models
        return list_models
    raise AttributeError(f"module 'hubselect' has no attribute {name!r}")
