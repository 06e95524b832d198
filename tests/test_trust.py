"""A shared edge dataset that one writer cannot poison, and a sync that nothing can crash.

Several users with their own tokens write to the edge dataset on the local Hub endpoint, over real
HTTP with the real huggingface_hub client; the attacker writes files straight through
``HfApi.create_commit``, as anyone with write access could.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from huggingface_hub import CommitOperationAdd, HfApi

from hubselect import rank as api_rank
from hubselect.share.push import push_records
from hubselect.share.records import RECORD_FORMAT, _canonical, make_record, record_id, record_path
from hubselect.share.sync import pull
from hubselect.hub import HubClient
from hubselect.profile.profiles import PROFILE_FORMAT, Profile
from hubselect.zoo.tables import ZooTables
from hubselect.zoo.format import Zoo
from tests.cli_helpers import run_cli

REPO_ID = "hubselect/t2i-finetuning-records"
MODELS = ["org/sd-small", "org/sd-base", "org/sd-large", "org/pixart"]
DATASETS = ["ds/faces", "ds/cars", "ds/birds"]
HONEST_BEST = "org/sd-small"                      # best on ds/faces (FID-like: lower is better)


# -- helpers --------------------------------------------------------------------------------------

@pytest.fixture
def users(hub_server) -> dict[str, str]:
    """Three Hub users with write tokens of their own: two honest, one attacker."""
    return {name: hub_server.add_user(name) for name in ("alice", "bob", "mallory")}


def client(token: str) -> HubClient:
    return HubClient(token=token, retries=1, backoff=0.05)


def honest_records(offset: float = 0.0) -> list[dict]:
    """Model i is best on dataset i."""
    out = []
    for d, dataset in enumerate(DATASETS):
        for m, model in enumerate(MODELS):
            score = 10.0 + 5 * m + (-8.0 if m == d else 0.0) + offset
            out.append(make_record(model, dataset, score, initial_score=score + 20, model_sha="a" * 40,
                                   dataset_revision="b" * 40, steps=500, seed=0, created_at="2026-01-01T00:00:00Z"))
    return out


def profile(dataset: str, shift: float, dim: int = 4) -> Profile:
    rng = np.random.default_rng(sum(map(ord, dataset)))
    x = rng.normal(size=(40, dim)) + shift
    return Profile(dataset=dataset, probe="clip", n_samples=40, mean=x.mean(0), covariance=np.cov(x.T),
                   source=f"hub:{dataset}", created_at="2026-01-01T00:00:00Z")


def honest_profiles() -> list[Profile]:
    return [profile(d, s) for d, s in zip(DATASETS, [0.0, 0.3, 3.0], strict=True)]


def make_zoo(path: Path) -> Zoo:
    zoo = Zoo.open(path, create=True)
    zoo.write_table("models", pd.DataFrame({"model": MODELS, "params": [1e9, 2e9, 3e9, 0.6e9],
                                            "family": ["sd", "sd", "sd", "pixart"]}))
    return zoo


def commit_files(token: str, files: dict[str, bytes], message: str = "add files") -> None:
    """What an attacker with write access can do: commit any bytes at any path."""
    HfApi(token=token).create_commit(REPO_ID, [CommitOperationAdd(p, d) for p, d in files.items()],
                                     commit_message=message, repo_type="dataset")


def record_file(body: dict, fmt: str = RECORD_FORMAT) -> tuple[str, bytes]:
    """A record file named by its content's hash (so only the content's checks can reject it)."""
    full = {"format": fmt, **body}
    try:
        rid = hashlib.sha256(_canonical(full)).hexdigest()
    except ValueError:
        rid = "f" * 64
    return f"records/{rid[:2]}/{rid}.json", json.dumps(full).encode()


def profile_file(meta: dict, mean, cov, path: str | None = None) -> tuple[str, bytes]:
    from safetensors.numpy import save
    data = save({"mean": np.asarray(mean, dtype=np.float64), "cov": np.asarray(cov, dtype=np.float64)},
                metadata={k: str(v) for k, v in meta.items()})
    return path or f"profiles/clip/{str(meta.get('dataset', 'x')).replace('/', '--')}.safetensors", data


def zoo_snapshot(path: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.relative_to(path).as_posix() not in skip}


def aggregated(zoo_dir: Path) -> pd.DataFrame:
    return ZooTables.load(Zoo(zoo_dir)).records.sort_values(["model", "dataset"]).reset_index(drop=True)


def records_only(snapshot: dict[str, bytes]) -> dict[str, bytes]:
    return {k: v for k, v in snapshot.items() if k != "edges_sync.json"}


# -- one voice per writer ------------------------------------------------------------------------------

def test_a_flood_of_claims_is_one_vote(hub_server, users, tmp_path):
    push_records(honest_records(), REPO_ID, client=client(users["alice"]), profiles=honest_profiles())
    push_records(honest_records(offset=0.5), REPO_ID, client=client(users["bob"]))
    claim = {"model": HONEST_BEST, "dataset": "ds/faces", "score": 1000.0, "initial_score": None,
             "model_sha": None, "dataset_revision": None, "metric": "clip-fid", "probe": "clip", "steps": 1,
             "adapter_repo": None, "versions": {"hubselect": "9"}, "created_at": "2026-01-02T00:00:00Z"}
    one = make_record(**{**claim, "seed": 0})
    push_records([one], REPO_ID, client=client(users["mallory"]))
    single = tmp_path / "single"
    make_zoo(single)
    assert pull(REPO_ID, single)["writers"] == {"alice": 12, "bob": 12, "mallory": 1}

    flood = [make_record(**{**claim, "seed": i}) for i in range(1, 500)]        # 499 more: 500 in all
    commit_files(users["mallory"], {record_path(r): (json.dumps({"format": RECORD_FORMAT, **r}) + "\n").encode()
                                    for r in flood}, message="500 claims")
    flooded = tmp_path / "flooded"
    make_zoo(flooded)
    summary = pull(REPO_ID, flooded)
    assert summary["writers"] == {"alice": 12, "bob": 12, "mallory": 500} and summary["skipped"] == 0
    table = Zoo(flooded).read_table("records")
    assert (table["writer"] == "mallory").sum() == 500
    assert set(table.loc[table["writer"] == "mallory", "model"]) == {HONEST_BEST}
    assert set(table["writer"]) == {"alice", "bob", "mallory"}

    # 500 claims weigh what one claim weighs: the same aggregated scores, the same ranking
    pd.testing.assert_frame_equal(aggregated(single), aggregated(flooded))
    best = aggregated(flooded).query("model == @HONEST_BEST and dataset == 'ds/faces'").iloc[0]
    assert best["writers"] == 3 and best["score"] == pytest.approx(2.5)       # median of 2.0, 2.5 and 1000
    ranked = [api_rank("ds/faces", zoo=z).models for z in (single, flooded)]
    assert [m.model for m in ranked[0]] == [m.model for m in ranked[1]] and ranked[1][0].model == HONEST_BEST
    assert ranked[1][0].source == "measured" and ranked[1][0].writers == 3
    assert api_rank("ds/faces", zoo=flooded).to_dict()["ranking"][0]["writers"] == 3   # what rank --json prints

    # the same zoo synced incrementally ends where the fresh one does
    assert pull(REPO_ID, single)["records_added"] == 499
    pd.testing.assert_frame_equal(aggregated(single), aggregated(flooded))


def test_trust_narrows_and_widens_without_downloading_again(hub_server, users, tmp_path):
    push_records(honest_records(), REPO_ID, client=client(users["alice"]), profiles=honest_profiles()[:2])
    push_records(honest_records(offset=0.5), REPO_ID, client=client(users["bob"]))
    push_records([make_record(HONEST_BEST, "ds/faces", 900.0, steps=1, seed=i) for i in range(20)], REPO_ID,
                 client=client(users["mallory"]), profiles=[profile("ds/evil", 9.0)])
    zoo_dir = tmp_path / "zoo"
    make_zoo(zoo_dir)
    assert pull(REPO_ID, zoo_dir)["writers"] == {"alice": 12, "bob": 12, "mallory": 20}
    assert (zoo_dir / "profiles/clip/ds--evil.safetensors").is_file()

    hub_server.clear_log()
    out = run_cli("sync", "--repo", REPO_ID, "--zoo", str(zoo_dir), "--distrust", "mallory", "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["records_removed"] == 20 and summary["profiles_removed"] == 1 and summary["downloaded"] == 0
    assert summary["excluded"] == {"mallory": 21} and summary["trust"] == {"trusted": None, "distrusted": ["mallory"]}
    assert hub_server.resolved_files() == []
    assert json.loads((zoo_dir / "trust.json").read_text())["distrusted"] == ["mallory"]
    assert set(Zoo(zoo_dir).read_table("records")["writer"]) == {"alice", "bob"}
    assert not (zoo_dir / "profiles/clip/ds--evil.safetensors").exists()
    assert "ds/evil" not in set(Zoo(zoo_dir).read_table("datasets")["dataset"])
    distances = Zoo(zoo_dir).read_table("dataset_distances")
    assert "ds/evil" not in set(distances["dataset_a"]) | set(distances["dataset_b"])

    only_alice = pull(REPO_ID, zoo_dir, only=["alice"])            # an allow-list: alice alone
    assert only_alice["writers"] == {"alice": 12} and only_alice["downloaded"] == 0
    back = pull(REPO_ID, zoo_dir, trust_everyone=True)            # everyone but the distrusted again
    assert back["writers"] == {"alice": 12, "bob": 12} and back["downloaded"] == 12
    widened = pull(REPO_ID, zoo_dir, trust=["mallory"])              # off the deny-list
    assert widened["writers"] == {"alice": 12, "bob": 12, "mallory": 20} and widened["profiles_added"] == 1
    assert json.loads((zoo_dir / "trust.json").read_text()) == {"format": 1, "trusted": None, "distrusted": []}


# -- content-addressed records -------------------------------------------------------------------------

def test_a_rewritten_record_is_skipped_as_tampered(hub_server, users, tmp_path):
    records = honest_records()
    push_records(records, REPO_ID, client=client(users["alice"]))
    early = tmp_path / "early"
    make_zoo(early)
    first = pull(REPO_ID, early)
    assert first["records_added"] == 12 and first["skipped"] == 0

    target = records[0]                                            # org/sd-small on ds/faces, 2.0
    forged = {"format": RECORD_FORMAT, **target, "score": 1000.0}
    commit_files(users["mallory"], {record_path(target): json.dumps(forged).encode()}, message="fix a score")
    old = {"format": "hubselect-record/1", **make_record("org/pixart", "ds/cars", 3.0, steps=5, seed=99)}
    commit_files(users["mallory"], dict([record_file(old, fmt="hubselect-record/1")]))

    for zoo_dir in (early, tmp_path / "fresh"):
        if not (zoo_dir / "zoo.json").exists():
            make_zoo(zoo_dir)
        summary = pull(REPO_ID, zoo_dir)
        assert summary["skipped_by_reason"] == {"old_format": 1, "tampered": 1}, summary["skipped_files"]
        assert summary["records_synced"] == 11 and summary["revision"] == hub_server.repo_sha(REPO_ID, "dataset")
        table = Zoo(zoo_dir).read_table("records")
        assert record_id(target) not in set(table["record_id"]) and 1000.0 not in set(table["score"])
        assert len(table) == 11
    assert pull(REPO_ID, early)["records_removed"] == 0


def test_rows_an_older_sync_took_leave_and_local_rows_stay(hub_server, users, tmp_path):
    push_records(honest_records()[:3], REPO_ID, client=client(users["alice"]))
    zoo_dir = tmp_path / "zoo"
    zoo = make_zoo(zoo_dir)
    zoo.write_table("records", pd.DataFrame({                      # as a sync of record format 1 left them
        "model": ["org/sd-base", "org/sd-large"], "dataset": ["ds/faces", "ds/mine"], "score": [1.0, 3.0],
        "record_id": ["0" * 64, None], "source": [f"hub:{REPO_ID}", None]}))
    summary = pull(REPO_ID, zoo_dir)
    assert summary["records_removed"] == 1 and summary["records_added"] == 3 and summary["records_total"] == 4
    table = Zoo(zoo_dir).read_table("records")
    assert "0" * 64 not in set(table["record_id"].dropna()) and "ds/mine" in set(table["dataset"])
    assert table.loc[table["dataset"] == "ds/mine", "writer"].isna().all()       # read as the owner's ("local")


# -- checks: nothing can crash a sync ------------------------------------------------------------------

def _valid_body(**change) -> dict:
    body = make_record("org/sd-base", "ds/cars", 12.0, steps=3, seed=7, created_at="2026-01-03T00:00:00Z")
    return {**body, **change}


def malformed_files() -> dict[str, tuple[str, bytes]]:
    """Files that must be skipped, by what is wrong with them (each named so that only its checks reject it)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 4))
    mean, cov = x.mean(0), np.cov(x.T)

    def meta(dataset: str) -> dict:
        return {"format": PROFILE_FORMAT, "dataset": dataset, "probe": "clip", "n_samples": 30, "dim": 4}
    nan_cov = cov.copy()
    nan_cov[0, 0] = np.nan
    deep = b'{"format": "' + RECORD_FORMAT.encode() + b'", "x": ' + b"[" * 30000 + b"]" * 30000 + b"}"
    return {
        "huge negative score": record_file(_valid_body(score=-1e308)),
        "score above the FID cap": record_file(_valid_body(score=5e4)),
        "string score": record_file(_valid_body(score="12")),
        "infinite score": ("records/ee/" + "e" * 64 + ".json",
                           json.dumps({"format": RECORD_FORMAT, **_valid_body()}).replace("12.0", "Infinity").encode()),
        "deep nesting": ("records/dd/" + "d" * 64 + ".json", deep),
        "200 000-deep nesting": ("records/dc/" + "c" * 64 + ".json", b"[" * 200_000 + b"]" * 200_000),
        "absolute path as dataset": record_file(_valid_body(dataset="/home/someone/photos")),
        "relative path as dataset": record_file(_valid_body(dataset="../photos")),
        "path as model": record_file(_valid_body(model="./pipelines/mine")),
        "long model name": record_file(_valid_body(model="org/" + "m" * 5000)),
        "control characters": record_file(_valid_body(metric="clip-fid\n")),
        "nested extra field": record_file(_valid_body(notes={"a": [1, 2]})),
        "not an object": ("records/aa/" + "a" * 64 + ".json", b"[1, 2, 3]"),
        "not JSON": ("records/bb/" + "b" * 64 + ".json", b"\xff\xfe not json"),
        "too large": record_file(_valid_body(padding="x" * 200, **{f"f{i}": "y" * 250 for i in range(300)})),
        "bad path": ("records/zz/not-a-hash.json", b"{}"),
        "profile n_samples abc": profile_file({**meta("ds/p1"), "n_samples": "abc"}, mean, cov),
        "profile without dataset": profile_file({k: v for k, v in meta("ds/p2").items() if k != "dataset"}, mean,
                                                cov, path="profiles/clip/ds--p2.safetensors"),
        "profile NaN covariance": profile_file(meta("ds/p3"), mean, nan_cov),
        "profile probe ../../evil": profile_file({**meta("ds/p4"), "probe": "../../evil"}, mean, cov),
        "profile probe not its folder": profile_file({**meta("ds/p5"), "probe": "efficientnet"}, mean, cov),
        "profile named for another dataset": profile_file(meta("ds/other"), mean, cov,
                                                          path="profiles/clip/ds--p6.safetensors"),
        "profile local path as dataset": profile_file(meta("/tmp/x"), mean, cov,
                                                      path="profiles/clip/_tmp--x.safetensors"),
        "profile not positive semi-definite": profile_file(meta("ds/p7"), mean, -np.eye(4)),
        "profile of another dimension": profile_file({**meta("ds/p8"), "dim": 3}, mean[:3], cov[:3, :3]),
        "profile truncated": ("profiles/clip/ds--p9.safetensors", profile_file(meta("ds/p9"), mean, cov)[1][:50]),
    }


def test_every_malformed_file_is_skipped_and_counted(hub_server, users, tmp_path):
    push_records(honest_records(), REPO_ID, client=client(users["alice"]), profiles=honest_profiles())
    clean = tmp_path / "clean"
    make_zoo(clean)
    pull(REPO_ID, clean)
    clean_tables = records_only(zoo_snapshot(clean))

    bad = malformed_files()
    assert len({path for path, _ in bad.values()}) == len(bad)
    commit_files(users["mallory"], dict(bad.values()), message="bad files")
    fresh = tmp_path / "fresh"
    make_zoo(fresh)
    result = run_cli("sync", "--repo", REPO_ID, "--zoo", str(fresh), "--json")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if "skipped" in line]) == 1     # one counted warning
    summary = json.loads(result.stdout)
    reasons = {f["path"]: f["reason"] for f in summary["skipped_files"]}
    for what, (path, _data) in bad.items():
        assert path in reasons, (what, summary["skipped_files"])
    assert summary["skipped"] == len(bad) and summary["records_synced"] == 12
    assert reasons[bad["too large"][0]] == "too_large" and reasons[bad["bad path"][0]] == "bad_path"
    # the zoo is as it would be without them, synced fresh or incrementally
    assert records_only(zoo_snapshot(fresh)) == clean_tables
    again = pull(REPO_ID, clean)
    assert again["skipped"] == len(bad) and again["downloaded"] == len(bad) - 3     # too large (2), bad path: not read
    assert records_only(zoo_snapshot(clean)) == clean_tables


# -- incremental, pinned ---------------------------------------------------------------------------------

def test_second_sync_downloads_no_record_again(hub_server, users, tmp_path):
    push_records(honest_records(), REPO_ID, client=client(users["alice"]), profiles=honest_profiles())
    zoo_dir = tmp_path / "zoo"
    make_zoo(zoo_dir)
    first = pull(REPO_ID, zoo_dir)
    assert first["downloaded"] == 15 and first["previous_revision"] is None
    assert json.loads((zoo_dir / "edges_sync.json").read_text())["repos"][REPO_ID]["revision"] == first["revision"]

    hub_server.clear_log()
    out = run_cli("sync", "--repo", REPO_ID, "--zoo", str(zoo_dir))
    assert out.returncode == 0, out.stderr
    assert f"{REPO_ID}@{first['revision'][:12]}" in out.stdout and "up to date" in out.stdout
    assert hub_server.resolved_files() == []
    assert not [r for r in hub_server.request_log if "/records/" in r[1] or "paths-info" in r[1]]

    new = make_record("org/pixart", "ds/cars", 7.0, steps=9, seed=1)
    push_records([new], REPO_ID, client=client(users["bob"]))
    hub_server.clear_log()
    second = pull(REPO_ID, zoo_dir)
    assert second["records_added"] == 1 and second["downloaded"] == 1
    assert second["previous_revision"] == first["revision"] != second["revision"]
    assert hub_server.resolved_files() == [(REPO_ID, record_path(new))]
    # every read was pinned to the revision the sync started from
    pinned = [r for r in hub_server.resolve_log if r["path"] == record_path(new)]
    assert {r["revision"] for r in pinned} == {second["revision"]}


# -- a killed sync ---------------------------------------------------------------------------------------

KILL_WORKER = r"""
import json, os, signal, sys
mode, zoo, arg, scratch = sys.argv[1:5]
parent = os.path.dirname(os.path.abspath(zoo))

def act(target):
    if mode == "sync":
        from hubselect.share.sync import pull
        from hubselect.hub import HubClient
        return pull(arg, target, client=HubClient(retries=0))
    from hubselect.profile.profiles import Profile
    from hubselect.profile.profiles import add_profile_staged
    return add_profile_staged(target, Profile.load(arg))

act(scratch)          # the same step on a copy elsewhere: every lazy import is done once, here, before the forks

WRITES = {"os.rename", "os.link", "os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.symlink", "shutil.rmtree",
          "os.truncate"}

def ours(value):
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, bytes):
        value = os.fsdecode(value)
    return isinstance(value, str) and os.path.abspath(value).startswith(parent + os.sep)

def run(kill_at):
    count = [0]
    def hook(event, args):
        hit = False
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
                (mode is None and isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            hit = writing and ours(path)
        elif event in WRITES:
            hit = any(ours(a) for a in args[:2])
        if hit:
            count[0] += 1
            if count[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
    sys.addaudithook(hook)
    act(zoo)
    return count[0]

for line in sys.stdin:
    kill_at = int(line)
    pid = os.fork()
    if pid == 0:
        try:
            n = run(kill_at)
            print(json.dumps({"writes": n}), flush=True)
            os._exit(0)
        except BaseException as exc:
            print(json.dumps({"error": repr(exc)}), flush=True)
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"killed": os.WIFSIGNALED(status), "code": os.waitstatus_to_exitcode(status)}), flush=True)
"""


def kill_at_every_write(zoo_dir: Path, mode: str, arg: str, tmp_path: Path) -> tuple[dict, dict, list[str]]:
    """Run one step (``sync`` from the edge dataset ``arg``, or ``profile`` adding the profile file ``arg``) on
    ``zoo_dir`` once to its end, then once per file-system write beside or in the zoo, each time on a fresh copy
    and killed with SIGKILL just before that write. Every killed run must leave the zoo exactly as it was before
    or as the uninterrupted run left it. Returns (before, after, "before"/"after" per kill)."""
    pristine = tmp_path / "pristine"
    shutil.copytree(zoo_dir, pristine)
    scratch = tmp_path / "scratch" / "zoo"
    shutil.copytree(pristine, scratch)
    before = zoo_snapshot(zoo_dir)
    worker = subprocess.Popen([sys.executable, "-c", KILL_WORKER, mode, str(zoo_dir), arg, str(scratch)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def attempt(kill_at: int) -> dict:
        """{"killed": bool, "code": int} of one forked run, with the child's own {"writes"} or {"error"}."""
        worker.stdin.write(f"{kill_at}\n")
        worker.stdin.flush()
        out: dict = {}
        while "killed" not in out:
            line = worker.stdout.readline()
            assert line, "the kill worker died"
            out.update(json.loads(line))
        return out

    try:
        done = attempt(10**9)                                        # no kill: how many writes, and the end state
        assert "writes" in done and not done["killed"], done
        writes = done["writes"]
        after = zoo_snapshot(zoo_dir)
        assert after != before and writes > 10
        outcomes = []
        for k in range(1, writes + 1):
            shutil.rmtree(zoo_dir.parent)                            # the zoo and what a kill left beside it
            shutil.copytree(pristine, zoo_dir)
            result = attempt(k)
            assert result["killed"], (k, result)
            state = zoo_snapshot(zoo_dir)
            assert state in (before, after), f"killed at write {k} of {writes}: the zoo is neither before nor after"
            outcomes.append("after" if state == after else "before")
        assert outcomes[0] == "before" and "after" in outcomes, (writes, outcomes)   # the swap is one of the writes
        assert outcomes == sorted(outcomes, key=["before", "after"].index)            # one switch, never back
    finally:
        worker.stdin.close()
        worker.wait(timeout=60)
    return before, after, outcomes


def test_sigkill_at_every_write_of_a_sync_leaves_the_zoo_before_or_after(hub_server, users, tmp_path):
    push_records(honest_records()[:6], REPO_ID, client=client(users["alice"]), profiles=honest_profiles()[:1])
    zoo_dir = tmp_path / "zoos" / "zoo"
    make_zoo(zoo_dir)
    pull(REPO_ID, zoo_dir)                                           # a zoo that already holds records
    push_records(honest_records()[6:], REPO_ID, client=client(users["bob"]), profiles=honest_profiles()[1:2])
    _before, after, _outcomes = kill_at_every_write(zoo_dir, "sync", REPO_ID, tmp_path)
    # the last kill left a staging copy beside the zoo: the next sync removes it and ends where an uninterrupted
    # one does
    assert [p for p in zoo_dir.parent.iterdir() if ".staging-" in p.name]
    pull(REPO_ID, zoo_dir)
    assert zoo_snapshot(zoo_dir) == after
    assert [p.name for p in zoo_dir.parent.iterdir() if p.name != ".zoo.lock"] == ["zoo"]


def test_sigkill_at_every_write_of_a_profile_leaves_the_zoo_before_or_after(tmp_path):
    from hubselect.profile.profiles import add_profile_staged

    zoo_dir = tmp_path / "zoos" / "zoo"
    make_zoo(zoo_dir)
    for p in honest_profiles()[:2]:
        add_profile_staged(zoo_dir, p)
    new = tmp_path / "new.safetensors"
    honest_profiles()[2].save(new)
    _before, after, _outcomes = kill_at_every_write(zoo_dir, "profile", str(new), tmp_path)
    assert "profiles/clip/ds--birds.safetensors" in after and b"ds/birds" in after["datasets.csv"]
    assert b"ds/birds" in after["dataset_distances.csv"]


# -- names from others never become actions ---------------------------------------------------------------

def test_suggest_acts_only_on_hub_ids_or_names_the_user_typed(tmp_path, monkeypatch):
    from hubselect.sweep.suggestions import suggest
    from hubselect.evaluate.synthetic import make_synthetic_zoo

    zoo = make_synthetic_zoo(n_models=4, n_datasets=6, density=0.6, seed=1).write(tmp_path / "zoo")
    records = zoo.read_table("records")
    model = records["model"].iloc[0]
    # names an earlier sync (or an older hubselect) let into the records: a folder name, a Hub-like name that is
    # also a folder here
    extra = pd.DataFrame({"model": [model, model], "dataset": ["photos", "kind0/local"], "score": [1.0, 2.0]})
    zoo.write_table("records", pd.concat([records, extra], ignore_index=True))
    (tmp_path / "photos").mkdir()
    (tmp_path / "kind0" / "local").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    out = suggest(100, zoo=zoo, read_edges=False)
    suggested = {s["dataset"] for s in out["suggestions"]}
    assert suggested and not suggested & {"photos", "kind0/local"}
    assert all(s.get("dataset_source") in (None, s["dataset"]) for s in out["suggestions"])
    assert any("2 dataset(s) of the zoo left out" in n for n in out["notes"])
    typed = suggest(100, zoo=zoo, datasets=["photos"], read_edges=False)     # the user's own folder
    assert {s["dataset"] for s in typed["suggestions"]} == {"photos"}


def test_push_refuses_what_a_sync_would_skip(hub_server, users):
    from hubselect.share.push import check_pushable
    from hubselect.errors import UserError

    for bad in (make_record("org/m", "/home/me/photos", 3.0), make_record("org/m", "ds/x", -1.0),
                make_record("org/m", "ds/x", 3.0, note={"nested": True}), make_record("../m", "ds/x", 3.0)):
        with pytest.raises(UserError):
            push_records([bad], REPO_ID, client=client(users["alice"]))
    with pytest.raises(UserError, match="valid Hub repo ID"):
        check_pushable("org/m", "my photos")
    assert hub_server.repo_sha(REPO_ID, "dataset") is None          # nothing reached the Hub
