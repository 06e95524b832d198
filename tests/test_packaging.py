"""The wheel as a user installs it: contents, the main job from the installed package, a read-only shipped zoo.

The wheel is built offline from a copy of the sources (`pip wheel --no-deps --no-build-isolation`, so the checkout
gets no build/ folder), installed with `pip install --no-deps --target`, and run with `python -S` and a PYTHONPATH of
the install target plus this interpreter's site-packages (for the dependencies): the editable install of the checkout
is not on the path, so what runs is what the wheel holds.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shutil
import site
import subprocess
import sys
import zipfile
from email.parser import Parser
from importlib.metadata import packages_distributions
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parent.parent
PHOTOS = REPO / "examples" / "photos"
# What the wheel is built from: the sources and the package metadata (README.md is the long description).
BUILD_INPUTS = ("pyproject.toml", "README.md", "hubselect", "crawlers", "zoo_cache")


def _tree_digest(root: Path) -> dict[str, str]:
    """Every file under root (bytecode caches aside) with the sha256 of its content."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and "__pycache__" not in p.parts}


def _offline_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUBSELECT_", "PYTHONPATH"))}
    env.update({"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "HF_HUB_OFFLINE": "1",
                "PYTHONDONTWRITEBYTECODE": "1"})
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            shutil.copy2(path, src / name)
    dist = work / "dist"
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                          "-w", str(dist)], capture_output=True, text=True, env=_offline_env(), timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    (built,) = dist.glob("hubselect-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site") / "target"
    res = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(target),
                          str(wheel)], capture_output=True, text=True, env=_offline_env(), timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return target


def _run_installed(target: Path, args: list[str], cwd: Path, hf_home: Path) -> subprocess.CompletedProcess:
    """`python -S -m ARGS` (or `-c CODE`) seeing only the install target and the dependencies' site-packages."""
    deps = [p for p in site.getsitepackages() if Path(p).is_dir()]
    env = _offline_env(PYTHONPATH=os.pathsep.join([str(target), *deps]), HF_HOME=str(hf_home))
    args = args if args[0] == "-c" else ["-m", *args]
    return subprocess.run([sys.executable, "-S", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)


def test_wheel_holds_the_package_the_crawlers_under_its_namespace_and_the_shipped_zoo(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    tops = {n.split("/", 1)[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"hubselect"}, tops
    assert not any(n.startswith(("crawlers/", "tests/", "zoo_cache/", "benchmarks/", "scripts/")) for n in names)
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    # Every module of the sources, at its installed name: a new subpackage missing from pyproject's list fails here.
    expected = {f"hubselect/{p.relative_to(REPO / 'hubselect').as_posix()}" for p in (REPO / "hubselect").rglob("*.py")
                if "__pycache__" not in p.parts}
    expected |= {f"hubselect/crawlers/{p.relative_to(REPO / 'crawlers').as_posix()}"
                 for p in (REPO / "crawlers").rglob("*.py") if "__pycache__" not in p.parts}
    assert expected - names == set()
    assert "hubselect/crawlers/pinned.txt" in names
    # The shipped zoo, file for file.
    shipped = {f"hubselect/zoo_cache/{p.relative_to(REPO / 'zoo_cache').as_posix()}"
               for p in (REPO / "zoo_cache").rglob("*") if p.is_file()}
    assert {"hubselect/zoo_cache/zoo.json", "hubselect/zoo_cache/models.csv"} <= shipped
    assert shipped - names == set()


# Declared but imported by no module of the product: what uses them.
USED_INDIRECTLY = {
    "torchvision": "bounded with torch; open_clip and clean-fid import it",
    "pyarrow": "pandas' parquet engine for parquet zoo tables and metadata.parquet",
    "sentencepiece": "the T5 tokenizers that transformers loads for sd3, flux and pixart",
}
# The packages of the optional extras, and the only modules allowed to import them (each turns a missing package
# into a one-line error naming the extra; tests/test_extras.py).
OPTIONAL_IMPORTS = {"numba": {"hubselect/rank/graph/node2vec.py"}, "xgboost": {"hubselect/rank/predictors.py"}}


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _product_imports() -> dict[str, set[str]]:
    """Top-level module -> the product files (hubselect/, crawlers/) that import it, stdlib and the package aside."""
    found: dict[str, set[str]] = {}
    for root in ("hubselect", "crawlers"):
        for path in (REPO / root).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in ("hubselect", "crawlers"):
                        found.setdefault(top, set()).add(path.relative_to(REPO).as_posix())
    return found


def test_wheel_declares_every_import_of_the_product_and_uses_every_declaration(wheel):
    from packaging.requirements import Requirement

    with zipfile.ZipFile(wheel) as zf:
        (meta_name,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        meta = Parser().parsestr(zf.read(meta_name).decode())
    declared: dict[str, set[str]] = {}          # extra ("" for the core) -> distributions
    for line in meta.get_all("Requires-Dist"):
        req = Requirement(line)
        extra = next((e for e in ("graph", "studies", "test") if req.marker and req.marker.evaluate({"extra": e})), "")
        declared.setdefault(extra, set()).add(_normalised(req.name))
    assert set(meta.get_all("Provides-Extra")) == {"graph", "studies", "test"}
    assert declared["graph"] == {"numba"} and declared["studies"] == {"xgboost-cpu"}
    assert "hubselect" in declared["test"]           # the test extra pulls every other extra: nothing is skipped
    assert {"pytest", "pecanpy", "gensim"} <= declared["test"]
    product = declared[""] | declared["graph"] | declared["studies"]

    imports = _product_imports()
    providers = {module: {_normalised(d) for d in dists} for module, dists in packages_distributions().items()}
    undeclared = sorted(m for m in imports if not providers.get(m, set()) & product)
    assert undeclared == [], f"imported by the product but not declared (core, graph or studies): {undeclared}"
    imported = set().union(*(providers.get(m, set()) for m in imports))
    unused = sorted(product - imported - set(USED_INDIRECTLY))
    assert unused == [], f"declared but never imported by the product: {unused}"
    assert not set(USED_INDIRECTLY) & imported, "imported after all: drop it from USED_INDIRECTLY"
    for module, allowed in OPTIONAL_IMPORTS.items():
        assert imports.get(module, set()) == allowed, f"{module} (an optional extra) imported by {imports.get(module)}"


def test_installed_wheel_ranks_the_shipped_zoo_from_any_folder_and_writes_nothing(installed, tmp_path):
    cwd = tmp_path / "work"
    shutil.copytree(PHOTOS, cwd / "photos")
    hf_home = tmp_path / "hf_home"
    before = _tree_digest(installed)

    check = _run_installed(installed, ["hubselect.cli", "--help"], cwd, hf_home)
    assert check.returncode == 0, check.stderr[-2000:]
    code = ("import importlib.util, json, hubselect, hubselect.crawlers.crawl as c\n"
            "from hubselect.zoo import shipped_zoo_dir, default_zoo_dir\n"
            "print(json.dumps({'hubselect': hubselect.__file__, 'crawl': c.__file__, 'pinned': c.PINNED_FILE.is_file(),"
            " 'crawlers': importlib.util.find_spec('crawlers') is not None,"
            " 'shipped': str(shipped_zoo_dir()), 'default': str(default_zoo_dir())}))")
    check = _run_installed(installed, ["-c", code], cwd, hf_home)
    assert check.returncode == 0, check.stderr[-2000:]
    found = json.loads(check.stdout)
    assert Path(found["hubselect"]).is_relative_to(installed) and Path(found["crawl"]).is_relative_to(installed)
    assert found["pinned"] and not found["crawlers"]          # no generic top-level `crawlers` module
    assert found["shipped"] == found["default"] == str(installed / "hubselect" / "zoo_cache")

    res = _run_installed(installed, ["hubselect.cli", "rank", "photos", "--probe", "efficientnet", "--json"], cwd,
                         hf_home)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    shipped_models = set(pd.read_csv(installed / "hubselect" / "zoo_cache" / "models.csv")["model"])
    assert {r["model"] for r in out["ranking"]} == shipped_models
    assert [r["rank"] for r in out["ranking"]] == list(range(1, len(shipped_models) + 1))
    assert Path(out["zoo"]).resolve() == (installed / "hubselect" / "zoo_cache").resolve()
    # Reading wrote nothing: not into the installed package, not a user zoo, not into the working folder.
    assert _tree_digest(installed) == before
    assert not (hf_home / "hubselect" / "zoo").exists()
    assert sorted(p.name for p in cwd.iterdir()) == ["photos"]


def test_installed_profile_without_zoo_writes_the_user_zoo_never_the_package(installed, tmp_path):
    cwd = tmp_path / "work"
    shutil.copytree(PHOTOS, cwd / "photos")
    hf_home = tmp_path / "hf_home"
    before = _tree_digest(installed)
    res = _run_installed(installed, ["hubselect.cli", "profile", "photos", "--probe", "efficientnet", "--n", "8",
                                     "--json"], cwd, hf_home)
    assert res.returncode == 0, res.stderr[-3000:]
    user_zoo = hf_home / "hubselect" / "zoo"
    assert Path(json.loads(res.stdout)["zoo"]) == user_zoo
    assert _tree_digest(installed) == before
    # The user's zoo started as a copy of the shipped one, then got the profile.
    shipped = _tree_digest(installed / "hubselect" / "zoo_cache")
    mine = _tree_digest(user_zoo)
    assert {k: v for k, v in mine.items() if k in ("models.csv", "model_info.csv", "zoo.json")} == \
        {k: v for k, v in shipped.items() if k in ("models.csv", "model_info.csv", "zoo.json")}
    assert any(k.startswith("profiles/efficientnet/") for k in mine)

    # A reading command now reads the user's zoo.
    listed = _run_installed(installed, ["hubselect.cli", "zoo", "--json"], cwd, hf_home)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert {r["model"] for r in json.loads(listed.stdout)} == \
        set(pd.read_csv(installed / "hubselect" / "zoo_cache" / "models.csv")["model"])


def test_profile_from_the_checkout_without_zoo_leaves_zoo_cache_untouched(tmp_path):
    hf_home = tmp_path / "hf_home"
    before = _tree_digest(REPO / "zoo_cache")
    env = _offline_env(HF_HOME=str(hf_home))
    res = subprocess.run([sys.executable, "-m", "hubselect.cli", "profile", str(PHOTOS), "--probe", "efficientnet",
                          "--n", "8", "--name", "my-photos"], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert _tree_digest(REPO / "zoo_cache") == before
    assert (hf_home / "hubselect" / "zoo" / "zoo.json").is_file()
    assert any((hf_home / "hubselect" / "zoo" / "profiles" / "efficientnet").rglob("*"))
    datasets = pd.read_csv(hf_home / "hubselect" / "zoo" / "datasets.csv")
    assert "my-photos" in set(datasets["dataset"])


def test_default_zoo_reads_the_user_zoo_when_it_exists_and_writes_only_there(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from hubselect.zoo import format as zoo_mod

    monkeypatch.delenv("HUBSELECT_ZOO", raising=False)
    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path / "hf_home"))
    shipped = zoo_mod.shipped_zoo_dir()
    user = tmp_path / "hf_home" / "hubselect" / "zoo"
    assert zoo_mod.user_zoo_dir() == user
    assert zoo_mod.default_zoo_dir() == shipped and not user.exists()      # reading: nothing made
    assert zoo_mod.Zoo.open().path == shipped
    before = _tree_digest(shipped)

    assert zoo_mod.Zoo.open(write=True).path == user                     # first write: a copy of the shipped zoo
    assert _tree_digest(user) == before
    assert zoo_mod.default_zoo_dir() == user                              # from now on, reading reads it too
    (user / "records.csv").write_text("model,dataset,score\na/b,d,1.0\n")
    assert zoo_mod.Zoo.open(create=True).path == user                     # made once, never copied over again
    assert (user / "records.csv").read_text().startswith("model,dataset,score\na/b")
    assert _tree_digest(shipped) == before
    assert not list(user.parent.glob(".zoo.*"))                           # no staging folder left behind

    monkeypatch.setenv("HUBSELECT_ZOO", str(tmp_path / "mine"))            # the variable wins, both ways
    assert zoo_mod.default_zoo_dir() == zoo_mod.default_zoo_dir(write=True) == tmp_path / "mine"


def test_user_zoo_path_that_is_not_a_zoo_is_one_line_error(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from hubselect.zoo import format as zoo_mod
    from hubselect.errors import UserError

    monkeypatch.delenv("HUBSELECT_ZOO", raising=False)
    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path))
    (tmp_path / "hubselect" / "zoo").mkdir(parents=True)
    (tmp_path / "hubselect" / "zoo" / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="holds no zoo.json"):
        zoo_mod.Zoo.open(write=True)
    assert (tmp_path / "hubselect" / "zoo" / "notes.txt").read_text() == "mine"
