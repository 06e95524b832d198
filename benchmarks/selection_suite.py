"""Leave-one-dataset-out on every zoo under the given folders: mc, mc-paper and every baseline.

    python benchmarks/selection_suite.py [DIR ...] [--methods mc,overall,...] [--seed 0]
                                         [--json OUT] [--no-paper]

A folder holding ``zoo.json`` is a zoo; the folders given are searched recursively (default:
``benchmarks/zoos``, the real zoos copied into the repository with their provenance). For each
zoo, :func:`hubselect.evaluate.protocol.leave_one_dataset_out` runs the methods of :func:`suite_methods`
and every baseline (overall, initial, direct, popularity, random); a baseline that cannot apply
to a zoo is left out there with a note. Prints one markdown table (per zoo and method: OSR, top-3
hit rate, weighted τ by the true ranking and with scipy's averaged weighting, regret of the top
pick, O2B, O2O), the mean over zoos per method, and how often mc is ahead of Overall. Progress,
with seconds per zoo, goes to stderr. A measurement run by hand, not a test: mc-paper is slow
(node2vec+ per held-out dataset), ``--no-paper`` skips it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hubselect.evaluate import metrics  # noqa: E402
from hubselect.errors import UserError  # noqa: E402
from hubselect.evaluate.protocol import PAPER_PRESET, eligible_datasets, leave_one_dataset_out  # noqa: E402
from hubselect.rank.estimator import MatchAndChoose  # noqa: E402
from hubselect.zoo.tables import ZooTables  # noqa: E402
from hubselect.zoo.format import Zoo  # noqa: E402

BASELINES = ("overall", "initial", "direct", "popularity", "random")
#: (summary column, table header); O2B and O2O are in each zoo's score units
FIGURES = (("osr", "OSR ↑"), ("top3", "top-3 ↑"), ("weighted_tau", "τ true ↑"), ("weighted_tau_avg", "τ avg ↑"),
           ("regret", "regret ↓"), ("o2b", "O2B ↓"), ("o2o", "O2O ↓"))
#: the figures that have no unit, so that a mean over zoos means something
UNIT_FREE = ("osr", "top3", "weighted_tau", "weighted_tau_avg", "regret")
LOWER_IS_BETTER = ("regret", "o2b", "o2o")


def suite_methods(seed: int = 0, include_paper: bool = True) -> dict[str, MatchAndChoose]:
    """The selectors the suite compares with the baselines; the one place they are constructed."""
    methods = {"mc": MatchAndChoose(seed=seed)}
    if include_paper:
        methods["mc-paper"] = MatchAndChoose(seed=seed, **PAPER_PRESET)
    return methods


def find_zoos(folders: list[Path]) -> list[tuple[str, Path]]:
    """(name, path) of every zoo under ``folders``, sorted; the name is the path below the folder
    given (the folder's own name when it is a zoo itself)."""
    found: dict[Path, str] = {}
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise SystemExit(f"selection_suite: {folder} is not a folder")
        for marker in sorted(folder.rglob("zoo.json")):
            path = marker.parent.resolve()
            name = marker.parent.relative_to(folder).as_posix()
            found.setdefault(path, folder.resolve().name if name == "." else name)
    return sorted(((name, path) for path, name in found.items()), key=lambda item: item[0])


def run_zoo(path: Path, methods: dict[str, MatchAndChoose], with_baselines: bool, seed: int) -> dict:
    """One zoo's leave-one-dataset-out: summary rows per method, notes, seconds."""
    start = time.perf_counter()
    tables = ZooTables.load(Zoo.open(path))
    targets = eligible_datasets(tables.records)
    if len(targets) < 2:
        raise UserError("fewer than two datasets with two or more scored models")
    per = leave_one_dataset_out(tables, methods, baselines=with_baselines, seed=seed)
    summary = metrics.summarize(per)
    return {"path": str(path), "metric": tables.metric, "higher_is_better": bool(tables.higher_is_better),
            "n_models": int(tables.models["model"].nunique()), "n_datasets": len(targets),
            "n_records": int(len(tables.records)), "notes": list(per.attrs.get("notes", [])),
            "methods": {row["method"]: {key: _num(row[key]) for key, _ in FIGURES}
                        | {"n_datasets": int(row["n_datasets"])} for row in summary.to_dict("records")},
            "seconds": round(time.perf_counter() - start, 1)}


def mean_over_zoos(results: dict[str, dict], methods: list[str]) -> dict[str, dict]:
    """Per method, the mean of each unit-free figure over the zoos where the method has it."""
    out = {}
    for method in methods:
        rows = [r["methods"][method] for r in results.values() if "methods" in r and method in r["methods"]]
        if not rows:
            continue
        out[method] = {key: _mean([row[key] for row in rows]) for key in UNIT_FREE} | {"zoos": len(rows)}
    return out


def compare(results: dict[str, dict], a: str = "mc", b: str = "overall", key: str = "weighted_tau") -> dict | None:
    """``a`` − ``b`` on ``key`` over the zoos where both have it, and on how many ``a`` is strictly
    ahead (higher, or lower for the loss figures: regret, O2B, O2O)."""
    pairs = [(r["methods"][a][key], r["methods"][b][key]) for r in results.values()
             if "methods" in r and a in r["methods"] and b in r["methods"]
             and r["methods"][a][key] is not None and r["methods"][b][key] is not None]
    if not pairs:
        return None
    diffs = [x - y for x, y in pairs]
    sign = -1 if key in LOWER_IS_BETTER else 1
    return {"a": a, "b": b, "figure": key, "ahead": sum(sign * d > 0 for d in diffs), "zoos": len(pairs),
            "mean_difference": sum(diffs) / len(diffs), "min_difference": min(diffs)}


# -- printing ---------------------------------------------------------------------------------------

def _num(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _cell(key: str, value) -> str:
    if value is None:
        return "–"
    if key in ("osr", "top3"):
        return f"{100 * value:.1f} %"
    if key in ("o2b", "o2o"):
        return f"{value:.4g}"
    return f"{round(value, 3) + 0.0:.3f}"      # + 0.0: no "-0.000"


def zoo_table(results: dict[str, dict], methods: list[str]) -> str:
    lines = ["| zoo | method | " + " | ".join(h for _, h in FIGURES) + " | datasets |",
             "|---|---|" + "---|" * (len(FIGURES) + 1)]
    for name, r in results.items():
        if "methods" not in r:
            lines.append(f"| {name} | (failed: {r.get('error', '?')}) |" + " |" * (len(FIGURES) + 1))
            continue
        for method in methods:
            if method in r["methods"]:
                row = r["methods"][method]
                lines.append(f"| {name} | {method} | " + " | ".join(_cell(k, row[k]) for k, _ in FIGURES)
                             + f" | {row['n_datasets']} |")
    return "\n".join(lines)


def mean_table(means: dict[str, dict]) -> str:
    heads = [h for k, h in FIGURES if k in UNIT_FREE]
    lines = ["| method | " + " | ".join(heads) + " | zoos |", "|---|" + "---|" * (len(heads) + 1)]
    for method, row in means.items():
        lines.append(f"| {method} | " + " | ".join(_cell(k, row[k]) for k in UNIT_FREE) + f" | {row['zoos']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="*", type=Path, default=[REPO / "benchmarks" / "zoos"], metavar="DIR",
                   help="folders searched recursively for zoos (default: benchmarks/zoos)")
    p.add_argument("--methods", default=None,
                   help="comma-separated subset of: mc, mc-paper, " + ", ".join(BASELINES) + " (default: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write every figure as JSON")
    p.add_argument("--no-paper", action="store_true", help="skip mc-paper (the slowest method)")
    args = p.parse_args(argv)

    known = ["mc", "mc-paper", *BASELINES]
    wanted = known if args.methods is None else [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in wanted if m not in known]
    if unknown:
        p.error(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    if args.no_paper:
        wanted = [m for m in wanted if m != "mc-paper"]
    selectors = {k: v for k, v in suite_methods(args.seed, include_paper="mc-paper" in wanted).items()
                 if k in wanted}
    with_baselines = any(m in BASELINES for m in wanted)
    order = [m for m in known if m in wanted]

    zoos = find_zoos(args.folders)
    if not zoos:
        raise SystemExit(f"selection_suite: no zoo (folder with zoo.json) under {', '.join(map(str, args.folders))}")
    results: dict[str, dict] = {}
    failed = 0
    total_start = time.perf_counter()
    for i, (name, path) in enumerate(zoos, 1):
        print(f"[{i}/{len(zoos)}] {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            result = run_zoo(path, selectors, with_baselines, args.seed)
            result["methods"] = {m: v for m, v in result["methods"].items() if m in wanted}
        except Exception as exc:            # one broken zoo must not cost the others' figures
            failed += 1
            if not isinstance(exc, UserError):
                traceback.print_exc(file=sys.stderr)
            result = {"path": str(path), "error": f"{type(exc).__name__}: {exc}",
                      "seconds": round(time.perf_counter() - start, 1)}
        results[name] = result
        state = "failed: " + result["error"] if "error" in result else f"{result['n_datasets']} datasets"
        print(f"[{i}/{len(zoos)}] {name}: {state}, {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)

    means = mean_over_zoos(results, order)
    versus = compare(results)
    print(f"**Leave-one-dataset-out per zoo** (seed {args.seed})\n")
    print(zoo_table(results, order))
    notes = [(name, line) for name, r in results.items() for line in r.get("notes", [])]
    if notes:
        print("\nNotes:\n")
        for name, line in notes:
            print(f"- {name}: {line}")
    print("\n**Mean over zoos** (O2B and O2O are in each zoo's score units and are not averaged)\n")
    print(mean_table(means))
    if versus is not None:
        print(f"\nmc ahead of overall (τ by true ranking) on {versus['ahead']} of {versus['zoos']} zoos; "
              f"mean mc − overall = {versus['mean_difference']:+.3f}")
        others = [compare(results, key=k) for k in ("weighted_tau_avg", "top3", "regret")]
        print("mean mc − overall: " + ", ".join(f"{c['figure']} {c['mean_difference']:+.3f}"
                                                for c in others if c is not None))
    seconds = time.perf_counter() - total_start
    print(f"\n{len(zoos)} zoo(s), {seconds:.1f} s", file=sys.stderr)
    if args.json is not None:
        payload = {"seed": args.seed, "methods": order, "zoos": results, "mean": means,
                   "mc_vs_overall": {k: compare(results, key=k)
                                     for k in ("weighted_tau", "weighted_tau_avg", "top3", "regret")},
                   "seconds": round(seconds, 1)}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
