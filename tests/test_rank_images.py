"""End to end on real images: profile datasets with the offline probe, plant results, rank new folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from tests.cli_helpers import run_cli

REPO = Path(__file__).resolve().parents[1]
PROBE = "efficientnet"




def _split(kind: str, dest: Path, parts: int) -> list[Path]:
    """Real example images of one kind dealt round-robin into ``parts`` folders."""
    images = sorted(p for p in (REPO / "examples" / kind).iterdir() if p.suffix.lower() in (".jpg", ".png"))
    folders = [dest / f"{kind}-{i}" for i in range(parts)]
    for f in folders:
        f.mkdir(parents=True)
    for i, img in enumerate(images):
        shutil.copy(img, folders[i % parts] / img.name)
    return folders


@pytest.fixture(scope="module")
def image_zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("imgzoo")
    zoo = root / "zoo"
    zoo.mkdir()
    (zoo / "zoo.json").write_text(json.dumps({"format": 1, "metric": "clip-fid", "higher_is_better": False,
                                              "probe": PROBE}))
    folders = {"photos": _split("photos", root / "data", 4), "drawings": _split("drawings", root / "data", 4)}
    train = {kind: fs[:3] for kind, fs in folders.items()}
    for kind, fs in train.items():
        for f in fs:
            res = run_cli("profile", str(f), "--probe", PROBE, "--name", f.name, "--zoo", str(zoo), "--json")
            assert res.returncode == 0, res.stderr
    # Planted results (FID-like, lower is better): one model is best on photos, one on drawings.
    best = {"photos": "org/photo-model", "drawings": "org/drawing-model"}
    models = ["org/photo-model", "org/drawing-model", "org/average-model", "org/weak-model"]
    rows = []
    for kind, fs in train.items():
        for j, f in enumerate(fs):
            for m in models:
                score = {best[kind]: 10.0, "org/average-model": 14.0, "org/weak-model": 20.0}.get(m, 17.0)
                rows.append({"model": m, "dataset": f.name, "score": score + 0.3 * j})
    pd.DataFrame(rows).to_csv(zoo / "records.csv", index=False)
    pd.DataFrame({"model": models, "params": [1e9, 2e9, 1.5e9, 0.5e9]}).to_csv(zoo / "models.csv", index=False)
    return zoo, {kind: fs[3] for kind, fs in folders.items()}, best


def test_profiles_and_same_probe_distances_are_in_the_zoo(image_zoo):
    zoo, _, _ = image_zoo
    datasets = pd.read_csv(zoo / "datasets.csv")
    assert len(datasets) == 6 and f"{PROBE}_0" in datasets.columns
    dist = pd.read_csv(zoo / "dataset_distances.csv")
    assert len(dist) == 15 and set(dist["probe"]) == {PROBE}
    # photos are closer to photos than to drawings
    def d(a, b):
        row = dist[((dist.dataset_a == a) & (dist.dataset_b == b)) | ((dist.dataset_a == b) & (dist.dataset_b == a))]
        return float(row["distance"].iloc[0])
    assert d("photos-0", "photos-1") < d("photos-0", "drawings-1")
    assert d("drawings-0", "drawings-2") < d("drawings-0", "photos-2")


@pytest.mark.parametrize("kind", ["photos", "drawings"])
def test_new_folder_of_each_kind_gets_its_planted_model_first(image_zoo, kind):
    zoo, new_folders, best = image_zoo
    before = sorted(p.as_posix() for p in zoo.rglob("*"))
    res = run_cli("rank", str(new_folders[kind]), "--zoo", str(zoo), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["cold_start"] is False
    assert out["ranking"][0]["model"] == best[kind], out["ranking"]
    assert out["ranking"][-1]["model"] == "org/weak-model"
    assert sorted(p.as_posix() for p in zoo.rglob("*")) == before      # ranking writes nothing


def test_human_output_lists_the_models(image_zoo):
    zoo, new_folders, best = image_zoo
    res = run_cli("rank", str(new_folders["photos"]), "--zoo", str(zoo), "--top", "2")
    assert res.returncode == 0, res.stderr
    rows = [line.split() for line in res.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == ["1", "2"] and rows[0][1] == best["photos"]
    assert rows[0][-1] == "predicted" and "expected position" in res.stdout
