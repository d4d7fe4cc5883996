"""Does PoseReNet help? A controlled ablation on LSPET, the numbers of docs/ablation.md.

    python benchmarks/ablation.py [--epochs 6] [--seeds 0 1 2] [--jobs 2] [--long-epochs 12]

Every variant trains the same small backbone (a slim SimpleBaseline-R18 at 128x96, the demo's)
on lspet_train for the same number of epochs with the same recipe and seeds, and is scored on
lspet_val (ground-truth boxes, flip test). Stage 1: the backbone alone (MSRA heatmaps), + DARK,
+ DARK + PoseReNet with each aggregation. Stage 2: the best aggregation without each branch.
Stage 3, what changes the outcome: the backbone's own heatmaps supervised too, a lighter lifted
loss, the identity-preserving init, and two more epochs on the trained backbone (plain, or
`poserenet boost` with the backbone frozen). Stage 4: twice the epochs, one seed. Finished runs
are reused, so the script can be stopped and restarted (about 2.5 hours on 2 cores). At the end
it writes docs/ablation_table.md (mean +- std over seeds, params, GFLOPs), docs/ablation.png and
runs/ablation/summary.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BASE = [
    "model.name=simplebaseline_r18", "model.kwargs={base_width: 32, deconv_channels: 64}", "data.input_hw=[128, 96]",
    "codec.sigma=2.0", "train.batch_size=32", "train.lr=2e-3", "eval.boxes=ground_truth", "eval.flip_test=true",
    "data.num_workers=0", "train.threads=1", "train.keep_last=0",
    # Under PoseReNet only its outputs are supervised, as in the paper's Fig. 1; stage 3 adds the
    # backbone's own heatmaps (which won, and is now the config default).
    "loss.output_weights={backbone: 0.0}",
]  # fmt: skip
DARK = ["codec.dark=true"]
MSRA = ["codec.dark=false"]


def plugin(aggregation: str, zero_init: bool, **off: bool) -> list[str]:
    out = [
        "model.poserenet.enabled=true",
        f"model.poserenet.aggregation={aggregation}",
        f"model.poserenet.zero_init={str(zero_init).lower()}",
    ]
    return out + [f"model.poserenet.{k}={str(v).lower()}" for k, v in off.items()]


def name_of(aggregation: str, zero_init: bool) -> str:
    return f"+ PoseReNet {aggregation}" + (" (zero init)" if zero_init else "")


def stage1() -> dict[str, list[str]]:
    variants = {"backbone (MSRA)": MSRA, "backbone + DARK": DARK}
    for agg in ("sum", "gate", "lifted", "fusion"):
        variants[name_of(agg, False)] = DARK + plugin(agg, False)
    return variants


def stage2(best: str, zero: bool) -> dict[str, list[str]]:
    # Without the lifting branch, aggregations that need it fall back to sum.
    no_lift = best if best in ("sum", "fusion") else "sum"
    return {
        f"{name_of(best, zero)} - attention": DARK + plugin(best, zero, channel_attention=False),
        f"{name_of(no_lift, zero)} - lifting": DARK + plugin(no_lift, zero, lifting=False),
        f"{name_of(best, zero)} - identity": DARK + plugin(best, zero, identity=False),
    }


def stage3_variants(best_name: str, best: str, zero: bool) -> dict[str, list[str]]:
    zero_agg = best if best != "lifted" else "sum"  # zero init needs an output at the backbone's resolution
    return {
        f"{best_name}, backbone heatmaps supervised": DARK + plugin(best, zero) + ["loss.output_weights={backbone: 1.0}"],
        f"{best_name}, lifted loss x0.1": DARK + plugin(best, zero) + ["loss.output_weights={backbone: 0.0, lifted: 0.1}"],
        name_of(zero_agg, True): DARK + plugin(zero_agg, True),
    }


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").replace("__", "_")


def run_one(name: str, overrides: list[str], seed: int, args: argparse.Namespace, epochs: int | None = None) -> dict:
    out = Path(args.out) / f"{slug(name)}_s{seed}"
    metrics = out / "metrics.json"
    if metrics.is_file() and (out / "done").is_file():
        return json.loads(metrics.read_text())
    epochs = epochs or args.epochs
    sets = [*BASE, *overrides, f"train.seed={seed}", f"train.epochs={epochs}", f"train.lr_steps=[{epochs - 1}]",
            f"train.out_dir={out}", f"train.val_every={epochs}", f"data.root={args.data}"]  # fmt: skip
    cmd = [
        sys.executable,
        "-m",
        "poserenet",
        "train",
        "lspet_simplebaseline_r18_128x96",
        "--quiet",
        *[a for s in sets for a in ("--set", s)],
    ]
    t = time.time()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if r.returncode != 0:
        raise RuntimeError(f"{name} seed {seed} failed:\n{r.stderr[-3000:]}")
    (out / "done").write_text(f"{time.time() - t:.0f} s\n")
    print(f"  {name} seed {seed}: {time.time() - t:.0f} s", flush=True)
    return json.loads(metrics.read_text())


def run_stage(variants: dict[str, list[str]], args: argparse.Namespace, seeds: list[int] | None = None,
              epochs: int | None = None) -> dict[str, list[dict]]:  # fmt: skip
    jobs = [(n, o, s) for n, o in variants.items() for s in (seeds or args.seeds)]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda j: run_one(*j, args, epochs), jobs))
    out: dict[str, list[dict]] = {}
    for (n, _, _), m in zip(jobs, results):
        out.setdefault(n, []).append(m)
    return out


def run_continuations(args: argparse.Namespace) -> dict[str, list[dict]]:
    """Two more epochs on top of each finished `backbone + DARK` run: the backbone alone keeps
    training (lr x0.1, as its schedule), or `poserenet boost` trains PoseReNet on the frozen
    backbone. The same extra budget either way."""
    import shutil

    out: dict[str, list[dict]] = {"backbone + DARK, 2 more epochs": [], "backbone + DARK, + boost 2 epochs (frozen)": []}
    jobs = []
    for seed in args.seeds:
        base = Path(args.out) / f"{slug('backbone + DARK')}_s{seed}"
        more = Path(args.out) / f"continue_s{seed}"
        boost = Path(args.out) / f"boost_s{seed}"
        sets = [*BASE, *DARK, f"train.seed={seed}", f"data.root={args.data}", "train.lr_steps=[5]"]
        if not (more / "done").is_file():
            more.mkdir(parents=True, exist_ok=True)
            shutil.copy(base / "last.pth", more / "last.pth")
            cmd = ["train", "lspet_simplebaseline_r18_128x96", "--quiet", "--resume", *[a for x in [*sets, "train.epochs=8", f"train.out_dir={more}",
                   "train.val_every=8"] for a in ("--set", x)]]  # fmt: skip
            jobs.append((cmd, more))
        if not (boost / "done").is_file():
            cmd = ["boost", str(base / "last.pth"), "--config", "lspet_simplebaseline_r18_128x96", "--epochs", "2", "--out", str(boost),
                   "--quiet", *[a for x in [*sets, "train.lr_steps=[100]", "train.val_every=2", "train.keep_last=0"] for a in ("--set", x)]]  # fmt: skip
            jobs.append((cmd, boost))

    def go(job):
        cmd, where = job
        t = time.time()
        r = subprocess.run([sys.executable, "-m", "poserenet", *cmd], capture_output=True, text=True, cwd=REPO,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:2])} failed:\n{r.stderr[-3000:]}")
        (where / "done").write_text(f"{time.time() - t:.0f} s\n")
        print(f"  {where.name}: {time.time() - t:.0f} s", flush=True)

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(go, jobs))
    for seed in args.seeds:
        out["backbone + DARK, 2 more epochs"].append(
            json.loads((Path(args.out) / f"continue_s{seed}" / "metrics.json").read_text())
        )
        out["backbone + DARK, + boost 2 epochs (frozen)"].append(
            json.loads((Path(args.out) / f"boost_s{seed}" / "metrics.json").read_text())
        )
    return out


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "lspet"))
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--long-epochs", type=int, default=12, help="stage 4's budget (one seed); 0 skips it")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (one CPU thread each)")
    p.add_argument("--out", default=str(REPO / "runs" / "ablation"))
    p.add_argument("--docs", default=str(REPO / "docs"))
    args = p.parse_args()
    if not Path(args.data, "lspet_train.json").is_file():
        sys.exit(f"LSPET not found in {args.data} (--data)")

    print(f"stage 1: backbone, DARK, aggregations ({len(args.seeds)} seeds, {args.epochs} epochs)", flush=True)
    results = run_stage(stage1(), args)
    plug = {n: mean_std([m["PCK@0.2"] for m in ms])[0] for n, ms in results.items() if n.startswith("+ PoseReNet")}
    best_name = max(plug, key=plug.get)
    best, zero = best_name.split()[2], best_name.endswith("(zero init)")
    print(f"stage 2: branches of the best variant ({best_name})", flush=True)
    results.update(run_stage(stage2(best, zero), args))
    print("stage 3: what changes the outcome", flush=True)
    results.update(run_stage(stage3_variants(best_name, best, zero), args))
    extra = run_continuations(args)
    if args.long_epochs:
        # Does a longer budget change the outcome? One seed each, at twice the epochs: the backbone
        # and the best PoseReNet variant of stages 1-3.
        plug = {n: mean_std([m["PCK@0.2"] for m in ms])[0] for n, ms in results.items() if n.startswith("+ PoseReNet")}
        winner = max(plug, key=plug.get)
        overrides = {**stage1(), **stage2(best, zero), **stage3_variants(best_name, best, zero)}[winner]
        print(f"stage 4: {args.long_epochs} epochs, seed {args.seeds[0]}: backbone + DARK vs {winner}", flush=True)
        extra.update(run_stage({f"backbone + DARK, {args.long_epochs} epochs": DARK, f"{winner}, {args.long_epochs} epochs": overrides},
                               args, seeds=args.seeds[:1], epochs=args.long_epochs))  # fmt: skip
    write_report(results, best_name, args, extra)


def write_report(results: dict[str, list[dict]], best: str, args: argparse.Namespace, extra: dict[str, list[dict]]) -> None:
    from poserenet import create_model
    from poserenet.complexity import measure
    from poserenet.config import load_config

    rows = []
    dirs = {"backbone + DARK, 2 more epochs": "continue", "backbone + DARK, + boost 2 epochs (frozen)": "boost"}
    for name, ms in {**results, **extra}.items():
        cfg = load_config(Path(args.out) / f"{dirs.get(name, slug(name))}_s{args.seeds[0]}" / "config.yaml")
        cost = measure(
            create_model(cfg.model.name, 14, poserenet=cfg.model.poserenet, **cfg.model.kwargs), tuple(cfg.data.input_hw)
        )
        pck, ap = mean_std([100 * m["PCK@0.2"] for m in ms]), mean_std([100 * m["AP"] for m in ms])
        rows.append({"variant": name, "pck": pck, "ap": ap, "params": cost.params_m, "gflops": cost.gflops,
                     "seeds": [round(100 * m["PCK@0.2"], 2) for m in ms]})  # fmt: skip
    summary = {"epochs": args.epochs, "seeds": args.seeds, "best_aggregation": best, "rows": rows}
    Path(args.out, "summary.json").write_text(json.dumps(summary, indent=1))
    docs = Path(args.docs)
    docs.mkdir(exist_ok=True)
    lines = ["| variant | PCK@0.2 (%) | OKS AP (%) | params (M) | GFLOPs | PCK per seed |", "|---|---:|---:|---:|---:|---|"]
    for r in rows:
        pm = (lambda m: f"{m[0]:.1f} ± {m[1]:.1f}") if len(r["seeds"]) > 1 else (lambda m: f"{m[0]:.1f} (1 seed)")
        lines.append(f"| {r['variant']} | {pm(r['pck'])} | {pm(r['ap'])} | "
                     f"{r['params']:.3f} | {r['gflops']:.3f} | {', '.join(f'{v:.1f}' for v in r['seeds'])} |")  # fmt: skip
    (docs / "ablation_table.md").write_text("\n".join(lines) + "\n")
    plot(rows, docs / "ablation.png")
    print("\n".join(lines))


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(rows) + 1.5), sharey=True)
    names = [r["variant"] for r in rows][::-1]
    ref = next(r for r in rows if r["variant"] == "backbone + DARK")
    for ax, key, label in ((axes[0], "pck", "PCK@0.2 (%)"), (axes[1], "ap", "OKS AP (%)")):
        means = [r[key][0] for r in rows][::-1]
        stds = [r[key][1] for r in rows][::-1]
        colors = ["#1f77b4" if "PoseReNet" in n or "boost" in n else "#888888" for n in names]
        ax.barh(names, means, xerr=stds, color=colors, capsize=3)
        ax.axvline(ref[key][0], color="#444444", ls="--", lw=1, label="backbone + DARK, 6 epochs")
        lo = min(m - s for m, s in zip(means, stds))
        ax.set_xlim(max(0, lo - 2), max(m + s for m, s in zip(means, stds)) + 1)
        ax.set_xlabel(label)
        ax.grid(axis="x", alpha=0.3)
    axes[1].legend(loc="lower right", fontsize=8)
    fig.suptitle(
        "LSPET val, slim SimpleBaseline-R18 128x96, 6 epochs unless stated, mean ± std over 3 seeds (blue: with PoseReNet)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
