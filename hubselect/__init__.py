"""hubselect: which pretrained text-to-image pipeline on the Hub should you fine-tune on your dataset?

The Python API mirrors the command line::

    import hubselect
    ranking = hubselect.rank("user/my-dataset", top=5)      # -> hubselect.Ranking
    for m in ranking.models:
        print(m.rank, m.model, m.score, m.confidence, m.source)
"""

__version__ = "0.1.0"

__all__ = ["rank", "Ranking", "RankedModel", "Zoo", "crawl", "list_models"]


def __getattr__(name):
    # Lazy: `import hubselect` stays cheap (no torch, no catboost) until something is used.
    if name in ("rank", "Ranking", "RankedModel"):
        from hubselect import select
        return getattr(select, name)
    if name == "Zoo":
        from hubselect.zoo import Zoo
        return Zoo
    if name == "crawl":
        from hubselect.crawlers.crawl import crawl
        return crawl
    if name == "list_models":
        from hubselect.zoo_listing import list_models
        return list_models
    raise AttributeError(f"module 'hubselect' has no attribute {name!r}")
