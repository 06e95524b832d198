"""The ``local`` sweep backend: fine-tune the pairs one after another on this machine.

Each pair runs :func:`hubselect.finetune.run.finetune` in this process and pushes adapter and
record; with more than one GPU visible, each pair runs as ``accelerate launch --multi_gpu -m
hubselect.cli finetune ...`` over all of them instead (:func:`accelerate_command`).
"""

from __future__ import annotations

import gc
import json
import logging
import subprocess
import sys
import threading
import time
from collections import deque

from hubselect.errors import UserError
from hubselect.hub import HubClient
from hubselect.errors import first_line
from hubselect.sweep.pairs import Pair, Progress, check_settings, finetune_args, zoo_probe

log = logging.getLogger(__name__)

LAUNCHERS = ("auto", "inprocess", "accelerate")


def gpu_count() -> int:
    try:
        import torch
        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:   # no CUDA runtime at all
        return 0


def run_local(pairs: list[Pair], *, zoo=None, settings: dict | None = None,
              edges_repo: str | None = None, launcher: str = "auto",
              progress: Progress | None = None,
              client: HubClient | None = None) -> list[dict]:
    """Fine-tune the pairs on this machine one after another; push adapter and record.

    ``launcher``: ``inprocess`` (this process, one device), ``accelerate`` (per pair a
    subprocess ``accelerate launch --multi_gpu -m hubselect.cli finetune ...``, data
    parallel over every visible GPU) or ``auto`` (accelerate with more than one GPU).
    Write access is checked once, before the first run. A pair that fails is logged
    and returned with ``status: failed``, and the sweep goes on.
    """
    from hubselect.finetune.publish import check_push_access
    from hubselect.share.records import edges_repo as checked_edges_repo
    from hubselect.zoo.format import Zoo

    zoo = zoo if isinstance(zoo, Zoo) else Zoo.open(zoo, write=bool(pairs))   # never the shipped zoo
    settings = check_settings(settings, zoo_probe(zoo))
    edges_repo = checked_edges_repo(edges_repo)
    if launcher not in LAUNCHERS:
        raise UserError(f"unknown launcher {launcher!r}: auto, inprocess or accelerate")
    n_gpus = gpu_count()
    if launcher == "auto":
        launcher = "accelerate" if n_gpus > 1 else "inprocess"
    if pairs:
        check_push_access(client or HubClient(), None, pairs[0].model_name,
                          pairs[0].dataset_name)
    results = []
    for i, pair in enumerate(pairs):
        label = f"{pair.model_name} on {pair.dataset_name}"
        if progress:
            progress(i, len(pairs), label)
        started = time.monotonic()
        try:
            if launcher == "accelerate":
                out = _run_accelerate(pair, settings, zoo=str(zoo.path),
                                      edges_repo=edges_repo, processes=max(n_gpus, 1))
            else:
                out = _run_inprocess(pair, settings, zoo=zoo, edges_repo=edges_repo,
                                     progress=progress, done=i, total=len(pairs))
        except KeyboardInterrupt:
            raise
        except Exception as exc:   # a failed pair never stops the sweep
            log.warning("%s failed: %s", label, first_line(exc))
            results.append({**pair.to_dict(), "status": "failed",
                            "error": first_line(exc),
                            "seconds": round(time.monotonic() - started, 1)})
            continue
        finally:
            _free_memory()
        rec = out["record"]
        results.append({**pair.to_dict(), "status": "done",
                        "record_id": out["record_id"], "score": rec["score"],
                        "initial_score": rec["initial_score"], "metric": rec["metric"],
                        "adapter_repo": out.get("adapter_repo"),
                        "seconds": round(time.monotonic() - started, 1)})
    if progress:
        progress(len(pairs), len(pairs), None)
    return results


def _run_inprocess(pair: Pair, settings: dict, *, zoo, edges_repo: str, progress,
                   done: int, total: int) -> dict:
    from hubselect.finetune.run import finetune
    from hubselect.finetune.trainer import FinetuneConfig

    config = FinetuneConfig(model=pair.model, dataset=pair.dataset, probe=None,
                            **settings)

    def on_progress(step: int, steps: int, loss: float) -> None:
        if progress:
            progress(done, total, f"{pair.model_name} on {pair.dataset_name}: "
                                  f"step {step}/{steps}")
    return finetune(config, zoo=zoo, push=True, edges_repo=edges_repo,
                    progress=on_progress)


def accelerate_command(pair: Pair, settings: dict, *, zoo: str, edges_repo: str,
                       processes: int) -> list[str]:
    """``accelerate launch`` of ``hubselect finetune`` for one pair on N GPUs."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
            "--num_processes", str(processes), "-m", "hubselect.cli", "finetune",
            *finetune_args(pair, settings, zoo=zoo, edges_repo=edges_repo)]


def _run_accelerate(pair: Pair, settings: dict, *, zoo: str, edges_repo: str,
                    processes: int) -> dict:
    cmd = accelerate_command(pair, settings, zoo=zoo, edges_repo=edges_repo,
                             processes=processes)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    tail: deque[str] = deque(maxlen=20)

    def relay() -> None:       # the run's progress stays visible; its last lines kept
        for line in proc.stderr:
            sys.stderr.write(line)
            tail.append(line.strip())
    relay_thread = threading.Thread(target=relay, daemon=True)
    relay_thread.start()
    stdout = proc.stdout.read()
    proc.wait()
    relay_thread.join(timeout=5)
    if proc.returncode != 0:
        errors = [t for t in tail if t.startswith("hubselect: error:")]
        last = errors[-1] if errors else next((t for t in reversed(tail) if t), "")
        raise RuntimeError(f"exit code {proc.returncode}: {last}")
    try:
        return json.JSONDecoder().raw_decode(stdout[stdout.find("{"):])[0]
    except ValueError:
        raise RuntimeError("the run printed no result") from None


def _free_memory() -> None:
    gc.collect()
    try:
        import torch
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:   # best effort
        pass
