"""Synthetic zoos with planted model–dataset affinity, for tests and for checking the evaluation.

Datasets come in ``n_kinds`` kinds. A dataset's features are its kind's centre plus noise, and
the distance between two datasets is the squared Euclidean distance of their features (what the
Fréchet distance of two profiles with equal covariances reduces to). Every model has a hidden
affinity for each kind; its score on a dataset is

    score = quality[model] + affinity_strength * affinity[model, kind] + noise_sd * N(0, 1)

so that "which model is best" depends on the dataset's kind, which only dataset features and
dataset–dataset distances reveal. The model features carry a noisy view of each model's
favourite kind (``family``) and an uninformative number (``size``). With ``higher_is_better``
false the scores are negated and shifted, as FID-like metrics run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hubselect.zoo.format import Zoo, ZooInfo, atomic_write_json


@dataclass
class SyntheticZoo:
    models: pd.DataFrame
    datasets: pd.DataFrame
    records: pd.DataFrame
    distances: pd.DataFrame
    kinds: dict[str, int]                  # dataset -> kind
    favourite: dict[str, int]              # model -> kind it is best at
    higher_is_better: bool
    metric: str

    def write(self, path: str | Path) -> Zoo:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path / "zoo.json", ZooInfo(metric=self.metric, higher_is_better=self.higher_is_better,
                                                     probe=None).to_dict())
        zoo = Zoo(path)
        zoo.write_table("models", self.models)
        zoo.write_table("datasets", self.datasets)
        zoo.write_table("records", self.records)
        zoo.write_table("dataset_distances", self.distances)
        return zoo

    def best_model(self, dataset: str) -> str:
        own = self.records[self.records["dataset"] == dataset].set_index("model")["score"]
        return own.idxmax() if self.higher_is_better else own.idxmin()


def make_synthetic_zoo(n_models: int = 10, n_datasets: int = 24, n_kinds: int = 2, n_features: int = 8,
                       affinity_strength: float = 1.0, noise_sd: float = 0.1, feature_noise: float = 0.3,
                       density: float = 1.0, higher_is_better: bool = True, metric: str = "synthetic-score",
                       seed: int = 0) -> SyntheticZoo:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(n_kinds, n_features))
    dataset_names = [f"kind{k}/ds{i:02d}" for i in range(n_datasets) for k in [i % n_kinds]]
    kinds = {name: i % n_kinds for i, name in enumerate(dataset_names)}
    feats = np.stack([centres[kinds[n]] + rng.normal(0, feature_noise, n_features) for n in dataset_names])

    model_names = [f"org/model-{j:02d}" for j in range(n_models)]
    favourite = {m: j % n_kinds for j, m in enumerate(model_names)}
    affinity = np.zeros((n_models, n_kinds))
    for j, m in enumerate(model_names):
        affinity[j, favourite[m]] = 1.0 + 0.5 * rng.random()
    quality = rng.normal(0, 0.1 * affinity_strength, n_models)

    rows = []
    for i, d in enumerate(dataset_names):
        for j, m in enumerate(model_names):
            if density < 1.0 and rng.random() > density:
                continue
            s = quality[j] + affinity_strength * affinity[j, kinds[d]] + noise_sd * rng.normal()
            rows.append({"model": m, "dataset": d, "score": s if higher_is_better else 10.0 - s})
    records = pd.DataFrame(rows)

    models = pd.DataFrame({"model": model_names,
                           "family": [f"fam{favourite[m]}" if rng.random() > 0.2 else f"fam{rng.integers(n_kinds)}"
                                      for m in model_names],
                           "size": rng.lognormal(0, 1, n_models)})
    datasets = pd.DataFrame(feats, columns=[f"feat_{i}" for i in range(n_features)])
    datasets.insert(0, "dataset", dataset_names)
    dist_rows = [{"dataset_a": a, "dataset_b": b, "distance": float(((feats[i] - feats[k]) ** 2).sum())}
                 for i, a in enumerate(dataset_names) for k, b in enumerate(dataset_names) if i < k]
    return SyntheticZoo(models=models, datasets=datasets, records=records, distances=pd.DataFrame(dist_rows),
                        kinds=kinds, favourite=favourite, higher_is_better=higher_is_better, metric=metric)
