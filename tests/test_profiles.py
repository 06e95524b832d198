"""Dataset profiles (hubselect.profile.profiles) and the ``hubselect profile`` command, with real probes."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hubselect.profile.distance import frechet_distance as _frechet_distance
from hubselect.errors import UserError
from hubselect.profile.profiles import (Profile, RunningMoments, add_profile_to_zoo, dataset_slug, load_profile,
                                        load_zoo_profiles, profile_dataset, profile_path)
from hubselect.zoo.format import Zoo
from tests.hub_server import make_repo
from tests.test_images import bad_files, hub, parquet_dataset, write  # noqa: F401  (hub is a fixture)


def frechet_distance(*args) -> float:
    from threadpoolctl import threadpool_limits
    with threadpool_limits(limits=1, user_api="blas"):   # see hubselect.profile.profiles._blas_single_thread
        return _frechet_distance(*args)


REPO = Path(__file__).resolve().parent.parent
PHOTOS = str(REPO / "examples" / "photos")
DRAWINGS = str(REPO / "examples" / "drawings")
N = 10   # images per profile: enough to tell photos from drawings, small enough to be quick


@pytest.fixture(scope="module")
def profiles():
    """Real profiles of the shipped examples (efficientnet on images, minilm on captions)."""
    return {
        "photos": profile_dataset(PHOTOS, probe="efficientnet", n=N, seed=0),
        "photos_resampled": profile_dataset(PHOTOS, probe="efficientnet", n=N, seed=1, name="photos-b"),
        "drawings": profile_dataset(DRAWINGS, probe="efficientnet", n=N, seed=0),
        "photos_captions": profile_dataset(PHOTOS, probe="minilm", n=N, seed=0),
        "photos_captions_resampled": profile_dataset(PHOTOS, probe="minilm", n=N, seed=1, name="photos-b"),
        "drawings_captions": profile_dataset(DRAWINGS, probe="minilm", n=N, seed=0),
    }


def zoo_snapshot(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


# -- statistics --------------------------------------------------------------------------------------

def test_running_moments_match_two_pass_float64_with_a_large_offset():
    rng = np.random.default_rng(0)
    x = 1e6 + rng.normal(size=(203, 7)) * np.arange(1, 8)     # the mean dwarfs the spread
    m = RunningMoments(7)
    for start, size in ((0, 1), (1, 50), (51, 2), (53, 150)):
        m.update(x[start:start + size].astype(np.float64))
    centred = x - x.mean(axis=0)
    np.testing.assert_allclose(m.mean, x.mean(axis=0), rtol=0, atol=1e-9)
    np.testing.assert_allclose(m.covariance, centred.T @ centred / (len(x) - 1), rtol=1e-9)
    np.testing.assert_allclose(m.covariance, np.cov(x, rowvar=False), rtol=1e-9)
    assert m.n == 203 and np.array_equal(m.covariance, m.covariance.T)


def test_running_moments_of_float32_batches_accumulate_in_float64():
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(5000, 3)) + 3000).astype(np.float32)
    m = RunningMoments(3)
    for chunk in np.array_split(x, 97):
        m.update(chunk)
    exact = np.cov(x.astype(np.float64), rowvar=False)
    np.testing.assert_allclose(m.covariance, exact, rtol=1e-10)


def test_running_moments_reject_bad_input():
    m = RunningMoments(3)
    with pytest.raises(ValueError):
        m.update(np.zeros((2, 4)))
    with pytest.raises(ValueError):
        m.update(np.array([[np.nan, 0, 0]]))
    m.update(np.zeros((1, 3)))
    with pytest.raises(ValueError):
        _ = m.covariance


# -- profiles of real data ---------------------------------------------------------------------------

def test_profile_of_a_folder(profiles):
    p = profiles["photos"]
    assert (p.dataset, p.probe, p.n_samples, p.dim, p.modality) == ("photos", "efficientnet", N, 1280, "image")
    assert p.source == PHOTOS and p.revision is None and p.skipped == {} and p.n_requested == N
    assert p.covariance.shape == (1280, 1280) and p.mean.dtype == np.float64
    assert np.array_equal(p.covariance, p.covariance.T)
    v = np.random.default_rng(0).normal(size=(1280, 8))
    assert (np.einsum("di,de,ei->i", v, p.covariance, v) >= -1e-9).all()      # positive semi-definite
    assert profiles["photos_resampled"].dataset == "photos-b"


def test_a_set_is_closer_to_a_resample_of_itself_than_to_another_set(profiles):
    a, b, other = profiles["photos"], profiles["photos_resampled"], profiles["drawings"]
    same = frechet_distance(a.mean, a.covariance, b.mean, b.covariance)
    different = frechet_distance(a.mean, a.covariance, other.mean, other.covariance)
    assert 0 < same < different


def test_caption_profiles(profiles):
    p, d = profiles["photos_captions"], profiles["drawings_captions"]
    assert (p.probe, p.modality, p.dim, p.n_samples, p.caption_column) == ("minilm", "text", 384, N, "caption")
    assert p.image_column is None
    # Captions are unit vectors: the mean of N of them has norm at most 1.
    assert 0 < np.linalg.norm(p.mean) <= 1 + 1e-9
    assert frechet_distance(p.mean, p.covariance, d.mean, d.covariance) > 0


def test_save_and_load_round_trip_without_pickle(profiles, tmp_path):
    p = profiles["photos"]
    path = p.save(tmp_path / "p.safetensors")
    raw = path.read_bytes()
    header_len = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + header_len])
    assert set(header) == {"mean", "cov", "__metadata__"}
    assert header["mean"]["dtype"] == "F64" and header["cov"]["shape"] == [1280, 1280]
    meta = header["__metadata__"]
    assert meta["dataset"] == "photos" and meta["probe"] == "efficientnet" and meta["n_samples"] == str(N)
    back = Profile.load(path)
    assert back.summary() == p.summary()
    assert np.array_equal(back.mean, p.mean) and np.array_equal(back.covariance, p.covariance)


def test_load_refuses_other_files(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="unreadable profile"):
        Profile.load(tmp_path / "x.safetensors")
    from safetensors.numpy import save_file
    save_file({"mean": np.zeros(2), "cov": np.eye(2)}, str(tmp_path / "y.safetensors"))
    with pytest.raises(UserError, match="not a hubselect profile"):
        Profile.load(tmp_path / "y.safetensors")


def test_profile_of_a_hub_dataset_records_its_revision(hub, hub_root):  # noqa: F811
    make_repo(hub_root, "org/pets", {"data/train-00000-of-00001.parquet": parquet_dataset(9, corrupt=1)},
              repo_type="dataset")
    from huggingface_hub import HfApi
    sha = HfApi().dataset_info("org/pets").sha
    p = profile_dataset("org/pets", probe="efficientnet", n=5, seed=0)
    assert (p.dataset, p.source, p.revision, p.split, p.n_samples) == ("org/pets", "hub:org/pets", sha, "train", 5)
    assert (p.image_column, p.caption_column) == ("image", "caption")
    everything = profile_dataset("org/pets", probe="efficientnet", n=100, seed=0, name="pets")
    assert everything.dataset == "pets" and everything.n_samples == 8 and everything.skipped == {"corrupt": 1}
    captions = profile_dataset("org/pets", probe="minilm", n=4)
    assert captions.modality == "text" and captions.n_samples == 4


def test_profile_errors(tmp_path, hub):  # noqa: F811
    write(tmp_path / "bad", bad_files())
    with pytest.raises(UserError, match=r"0 usable images.*corrupt 1.*not_an_image 2.*too_large 2"):
        profile_dataset(str(tmp_path / "bad"), probe="efficientnet", n=10)
    with pytest.raises(UserError, match="unknown probe 'resnet'"):
        profile_dataset(str(tmp_path / "does-not-exist"), probe="resnet")
    with pytest.raises(UserError, match="at least 2"):
        profile_dataset(PHOTOS, probe="efficientnet", n=1)
    with pytest.raises(UserError, match="no image files"):
        (tmp_path / "empty").mkdir()
        profile_dataset(str(tmp_path / "empty"), probe="efficientnet")
    with pytest.raises(UserError, match="org/unknown not found"):
        profile_dataset("org/unknown", probe="efficientnet")


def test_progress_is_reported(tmp_path):
    calls = []
    profile_dataset(DRAWINGS, probe="minilm", n=5, progress=lambda done, total, item: calls.append((done, total)))
    assert calls[-1] == (5, 5)


def test_profile_is_the_same_with_and_without_dataloader_workers(tmp_path):
    """Workers only decode: same images, same order, same batches, so the same profile bit for bit."""
    import shutil
    folder = tmp_path / "mixed"
    shutil.copytree(PHOTOS, folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    runs = {}
    for workers in (0, 1, 2):
        timings = {}
        runs[workers] = (profile_dataset(str(folder), probe="efficientnet", n=20, seed=3, workers=workers,
                                         batch_size=6, timings=timings), timings)
    base, t0 = runs[0]
    assert base.n_samples == 20
    for workers in (1, 2):
        got, t = runs[workers]
        assert np.array_equal(got.mean, base.mean) and np.array_equal(got.covariance, base.covariance)
        assert got.skipped == base.skipped and got.n_samples == base.n_samples
        assert t["workers"] == workers and t["batch_size"] == 6 and t["images"] == 20
    for key in ("list", "load_probe", "decode", "transform", "wait", "forward", "moments", "total"):
        assert t0[key] >= 0.0
    assert t0["total"] >= t0["forward"] + t0["wait"]


def test_batch_size_changes_the_profile_only_by_round_off():
    a = profile_dataset(PHOTOS, probe="efficientnet", n=12, batch_size=12, workers=0)
    b = profile_dataset(PHOTOS, probe="efficientnet", n=12, batch_size=5, workers=0)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(a.covariance, b.covariance, rtol=1e-3, atol=1e-5)
    with pytest.raises(UserError, match="batch size"):
        profile_dataset(PHOTOS, probe="efficientnet", n=4, batch_size=0)


def test_default_workers_follow_the_environment(monkeypatch):
    from hubselect.profile.profiles import default_workers
    monkeypatch.setenv("HUBSELECT_PROFILE_WORKERS", "0")
    assert default_workers() == 0
    monkeypatch.setenv("HUBSELECT_PROFILE_WORKERS", "many")
    with pytest.raises(UserError, match="HUBSELECT_PROFILE_WORKERS"):
        default_workers()
    monkeypatch.delenv("HUBSELECT_PROFILE_WORKERS")
    assert 0 <= default_workers() <= 2


# -- the zoo -------------------------------------------------------------------------------------------

def test_slugs():
    assert dataset_slug("org/name") == "org--name"
    assert dataset_slug("my photos: v2") == "my_photos__v2"
    assert "/" not in dataset_slug("../../etc") and not dataset_slug("../../etc").startswith(".")


def test_add_profiles_to_zoo_updates_tables_with_same_probe_pairs_only(profiles, tmp_path):
    zoo = Zoo.open(tmp_path / "zoo", create=True)
    first = add_profile_to_zoo(zoo, profiles["photos_captions"])
    assert first["distances"] == {}
    assert Path(first["profile"]) == profile_path(zoo, "minilm", "photos")
    assert Path(first["profile"]).relative_to(zoo.path).as_posix() == "profiles/minilm/photos.safetensors"
    add_profile_to_zoo(zoo, profiles["drawings_captions"])
    add_profile_to_zoo(zoo, profiles["photos"])                     # the first efficientnet profile: no pair
    add_profile_to_zoo(zoo, profiles["photos_captions_resampled"])

    datasets = zoo.read_table("datasets").set_index("dataset")
    assert list(datasets.index) == ["photos", "drawings", "photos-b"]
    eff = [f"efficientnet_{i}" for i in range(1280)]
    mini = [f"minilm_{i}" for i in range(384)]
    assert set(eff + mini + ["n_images"]) <= set(datasets.columns)
    np.testing.assert_allclose(datasets.loc["photos", eff].to_numpy(float), profiles["photos"].mean)
    np.testing.assert_allclose(datasets.loc["photos", mini].to_numpy(float), profiles["photos_captions"].mean)
    assert datasets.loc["drawings", eff].isna().all() and not datasets.loc["drawings", mini].isna().any()
    assert (datasets["n_images"] == N).all()

    distances = zoo.read_table("dataset_distances")
    pairs = {(r.dataset_a, r.dataset_b, r.probe): r.distance for r in distances.itertuples()}
    assert set(pairs) == {("drawings", "photos", "minilm"), ("photos-b", "drawings", "minilm"),
                          ("photos-b", "photos", "minilm")}        # no efficientnet pair: one such profile
    a, b = profiles["photos_captions"], profiles["drawings_captions"]
    assert pairs[("drawings", "photos", "minilm")] == pytest.approx(
        frechet_distance(a.mean, a.covariance, b.mean, b.covariance), rel=1e-9)

    added = add_profile_to_zoo(zoo, profiles["drawings"])           # the first efficientnet pair
    assert list(added["distances"]) == ["photos"]
    distances = zoo.read_table("dataset_distances")
    assert list(distances.loc[distances["probe"] == "efficientnet", ["dataset_a", "dataset_b"]]
                .itertuples(index=False, name=None)) == [("drawings", "photos")]
    assert len(distances) == 4

    # Profiling a dataset again replaces its rows instead of adding new ones.
    again = add_profile_to_zoo(zoo, profiles["photos_captions"])
    assert sorted(again["distances"]) == ["drawings", "photos-b"]
    assert len(zoo.read_table("dataset_distances")) == 4
    assert len(zoo.read_table("datasets")) == 3
    assert [p.dataset for p in load_zoo_profiles(zoo, "minilm")] == ["drawings", "photos", "photos-b"]
    assert [p.dataset for p in load_zoo_profiles(zoo, "efficientnet")] == ["drawings", "photos"]
    assert load_profile(zoo, "photos", "efficientnet").modality == "image"
    assert load_profile(zoo, "nope", "minilm") is None


def test_add_profile_keeps_other_columns_and_unrelated_distances(profiles, tmp_path):
    zoo = Zoo.open(tmp_path / "zoo", create=True)
    zoo.write_table("datasets", pd.DataFrame({"dataset": ["photos", "legacy"], "domain": ["natural", "text"]}))
    zoo.write_table("dataset_distances", pd.DataFrame({"dataset_a": ["legacy"], "dataset_b": ["photos"],
                                                       "distance": [0.5]}))
    add_profile_to_zoo(zoo, profiles["photos_captions"])
    datasets = zoo.read_table("datasets").set_index("dataset")
    assert list(datasets.index) == ["photos", "legacy"]
    assert datasets.loc["photos", "domain"] == "natural" and np.isnan(datasets.loc["legacy", "n_images"])
    distances = zoo.read_table("dataset_distances")
    assert len(distances) == 1 and distances.loc[0, "distance"] == 0.5 and pd.isna(distances.loc[0, "probe"])


def test_a_damaged_zoo_is_left_untouched(profiles, tmp_path):
    zoo = Zoo.open(tmp_path / "zoo", create=True)
    (zoo.path / "dataset_distances.csv").write_text("not,the,right\ncolumns,at,all\n")
    before = zoo_snapshot(zoo.path)
    with pytest.raises(UserError, match="lacks column"):
        add_profile_to_zoo(zoo, profiles["photos_captions"])
    assert zoo_snapshot(zoo.path) == before


# -- the command line ------------------------------------------------------------------------------------

def run_cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    from hubselect.cli import root as cli
    monkeypatch.setattr(sys, "argv", ["hubselect", *args])
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_profile_json_and_default_probe_from_zoo(monkeypatch, capsys, tmp_path):
    zoo_dir = tmp_path / "zoo"
    Zoo.open(zoo_dir, create=True)
    (zoo_dir / "zoo.json").write_text(json.dumps({"format": 1, "metric": "clip-fid", "higher_is_better": False,
                                                  "probe": "efficientnet"}))
    code, out, err = run_cli(monkeypatch, capsys, "profile", DRAWINGS, "--n", "4", "--zoo", str(zoo_dir), "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert (summary["dataset"], summary["probe"], summary["n_images"], summary["dim"]) == (
        "drawings", "efficientnet", 4, 1280)
    assert summary["skipped"] == {} and summary["revision"] is None
    assert (zoo_dir / "profiles" / "efficientnet" / "drawings.safetensors").is_file()

    code, out, err = run_cli(monkeypatch, capsys, "profile", PHOTOS, "--n", "4", "--zoo", str(zoo_dir),
                             "--name", "my-photos")
    assert code == 0, err
    assert "profiled my-photos with efficientnet: 4 images" in out and "distances to 1 other datasets" in out
    distances = Zoo.open(zoo_dir).read_table("dataset_distances")
    assert list(distances[["dataset_a", "dataset_b", "probe"]].itertuples(index=False)) == [
        ("my-photos", "drawings", "efficientnet")]


@pytest.mark.parametrize("args,message", [
    (["/nonexistent/folder/x"], "no such folder"),
    ([DRAWINGS, "--probe", "resnet"], "unknown probe 'resnet'"),
    ([DRAWINGS, "--n", "1"], "--n"),
    (["BAD"], None),                                   # replaced by a folder of unusable files below
    (["NOCAPTIONS", "--probe", "minilm"], "no captions"),
])
def test_cli_bad_input_exits_2_with_one_line_and_writes_nothing(monkeypatch, capsys, tmp_path, args, message):
    zoo_dir = tmp_path / "zoo"
    write(tmp_path / "bad", bad_files())
    write(tmp_path / "nocaptions", {"a.png": (REPO / "examples" / "drawings" / "sun_02.png").read_bytes()})
    args = [str(tmp_path / "bad") if a == "BAD" else str(tmp_path / "nocaptions") if a == "NOCAPTIONS" else a
            for a in args]
    code, out, err = run_cli(monkeypatch, capsys, "profile", *args, "--probe" if "--probe" not in args else "--seed",
                             "efficientnet" if "--probe" not in args else "0", "--zoo", str(zoo_dir))
    assert code == 2
    assert out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    if message:
        assert message in err
    assert not zoo_dir.exists()                        # not even zoo.json was created


def test_cli_failure_leaves_an_existing_zoo_untouched(monkeypatch, capsys, tmp_path, profiles):
    zoo = Zoo.open(tmp_path / "zoo", create=True)
    add_profile_to_zoo(zoo, profiles["photos_captions"])
    before = zoo_snapshot(zoo.path)
    code, _, err = run_cli(monkeypatch, capsys, "profile", str(tmp_path / "missing"), "--probe", "efficientnet",
                           "--zoo", str(zoo.path))
    assert code == 2 and "no such folder" in err
    assert zoo_snapshot(zoo.path) == before


def test_cli_entry_point_bad_input(tmp_path):
    """The installed entry point, in a fresh process: one line on stderr, exit code 2."""
    proc = subprocess.run([sys.executable, "-m", "hubselect.cli", "profile", str(tmp_path / "missing"),
                           "--probe", "efficientnet", "--zoo", str(tmp_path / "zoo")],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "no such folder" in proc.stderr
    assert not (tmp_path / "zoo").exists()
