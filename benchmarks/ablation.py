"""Does PoseReNet help? The controlled comparison on LSPET behind docs/ablation.md.

    python benchmarks/ablation.py [--settings slim6 slim18 full6 boost] [--seeds 0 1 2] [--jobs 2]

Every run trains on lspet_train with the same recipe and seeds and is scored on lspet_val
(ground-truth boxes, flip test). Settings:

- slim6 / slim18: the demo's slim SimpleBaseline-R18 (half-width trunk, 64-channel
  deconvolutions) for 6 and 18 epochs: the backbone + DARK, + PoseReNet with each
  aggregation (the default among them), and the default with the backbone detached from the
  plug-in's loss (slim6 also with 2x targets as wide as the 1x ones; slim18 also with 0.3 of
  the plug-in's gradient reaching the backbone, and `average` on the first seed only);
- full6: the full SimpleBaseline-R18 for 6 epochs: the backbone + DARK, + PoseReNet (default),
  and the default with the backbone detached from the plug-in's loss or reached by 0.3 of it;
- boost: on each trained slim18 backbone, `poserenet boost` (frozen backbone) against the
  backbone trained on at its final learning rate, for an equal wall time.

The backbone runs are also scored with their heatmaps upsampled 2x before decoding (the control
for the default PoseReNet's finer output: how much of its gain is the resolution it decodes at).

Each run is `poserenet train lspet_simplebaseline_r18_128x96 --set ...` (or `poserenet boost`);
finished runs in runs/ablation/ are reused and a stopped run resumes from its last epoch, so
the script can be stopped and restarted. `--core` trains only the backbone and the default
PoseReNet, `--only TEXT` the variants whose name contains TEXT; `--report-only` trains nothing
and reports every run that has finished. It writes docs/ablation_table.md, docs/ablation.png
and benchmarks/results/ablation_summary.json; that summary is the record that outlives runs/:
the report merges new runs into it (new seeds of a variant pooled with its stored ones) and
keeps the rows and settings that have no runs on disk, so `--report-only` on a fresh clone
rewrites the doc's tables from it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from poserenet.models.plugin import AGGREGATIONS, PoseReNetConfig  # noqa: E402

DEFAULT = PoseReNetConfig.aggregation
BASE = [
    "model.name=simplebaseline_r18", "data.input_hw=[128, 96]", "codec.sigma=2.0", "codec.dark=true",
    "train.batch_size=32", "train.lr=2e-3", "eval.boxes=ground_truth", "eval.flip_test=true",
    "data.num_workers=0", "train.threads=1", "train.keep_last=0",
    "train.amp=none", "train.channels_last=false",  # float32, as every run here was trained before bf16 became the CPU default
]  # fmt: skip
SLIM = ["model.kwargs={base_width: 32, deconv_channels: 64}"]
BACKBONE = "backbone + DARK"


def plugin(aggregation: str) -> list[str]:
    return ["model.poserenet.enabled=true", f"model.poserenet.aggregation={aggregation}"]


def variant_name(aggregation: str) -> str:
    return f"+ PoseReNet {aggregation}"


# The paper's other silent points, each against the default: how wide the 2x targets are, and
# how much of the plug-in's loss reaches into the backbone (none, or a fraction of it).
WIDE_2X = f"+ PoseReNet {DEFAULT}, 2x targets as wide as the 1x ones"
DETACHED = f"+ PoseReNet {DEFAULT}, backbone detached"
SCALED = f"+ PoseReNet {DEFAULT}, backbone gradient x0.3"
CHOICES = {
    WIDE_2X: [*plugin(DEFAULT), "codec.sigma_2x=4.0"],
    DETACHED: [*plugin(DEFAULT), "model.poserenet.backbone_grad=0"],
    SCALED: [*plugin(DEFAULT), "model.poserenet.backbone_grad=0.3"],
}


def label(name: str) -> str:
    """The variant's name in the report: the default aggregation is marked."""
    return name + " (default)" if name == variant_name(DEFAULT) else name


@dataclass
class Setting:
    label: str
    model: list[str]
    epochs: int
    aggregations: tuple[str, ...]
    val_every: int = 0  # 0: only after the last epoch
    choices: tuple[str, ...] = ()  # also these silent-point variants of CHOICES
    # Aggregations trained on the first seed only (every other variant on every seed): the
    # 18-epoch runs cost three times as much, and these were level with the backbone at 6.
    one_seed: tuple[str, ...] = ()

    def seeds_of(self, name: str, seeds: list[int]) -> list[int]:
        return seeds[:1] if name in (variant_name(a) for a in self.one_seed) else seeds

    def variants(self) -> dict[str, list[str]]:
        return {BACKBONE: [], **{variant_name(a): plugin(a) for a in self.aggregations}, **{c: CHOICES[c] for c in self.choices}}

    def overrides(self) -> list[str]:
        drop = round(self.epochs * 5 / 6)  # lr x0.1 for the last sixth, as the LSPET recipe (5 of 6)
        return [*BASE, *self.model, f"train.epochs={self.epochs}", f"train.lr_steps=[{drop}]",
                f"train.val_every={self.val_every or self.epochs}"]  # fmt: skip


SETTINGS = {
    "slim6": Setting("slim R18, 6 epochs", SLIM, 6, AGGREGATIONS, choices=(WIDE_2X, DETACHED)),
    "slim18": Setting("slim R18, 18 epochs", SLIM, 18, AGGREGATIONS, val_every=3, choices=(DETACHED, SCALED), one_seed=("average",)),
    # channels_last (the CPU default since these runs began; 1.09x here) for a model 4x as slow to train as the slim one
    # Detached: the backbone trains as it does alone (end to end, seed 1's fell far behind it)
    "full6": Setting("full R18, 6 epochs", ["train.channels_last=true"], 6, (DEFAULT,), choices=(DETACHED, SCALED)),
}


@dataclass
class Args:
    data: str
    out: Path
    seeds: list[int]
    jobs: int
    more_epochs: int
    boost_epochs: int
    docs: Path
    settings: list[str] = field(default_factory=list)
    core: bool = False
    report_only: bool = False
    only: list[str] = field(default_factory=list)


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_").replace("__", "_")


def run(cmd: list[str], where: Path) -> dict:
    """One `poserenet` command into `where`, reused when it finished before; a training run that
    was stopped part-way resumes from its last epoch (bit-exact)."""
    done = where / "done"
    if done.is_file():
        return json.loads((where / "metrics.json").read_text())
    if cmd[0] == "train" and "--resume" not in cmd and (where / "last.pth").is_file():
        cmd = [*cmd[:2], "--resume", *cmd[2:]]
    t = time.time()
    r = subprocess.run([sys.executable, "-m", "poserenet", *cmd], capture_output=True, text=True, cwd=REPO,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    if r.returncode != 0:
        raise RuntimeError(f"{where.name} failed:\n{r.stderr[-3000:]}")
    done.write_text(f"{time.time() - t:.0f}\n")
    print(f"  {where.parent.name}/{where.name}: {time.time() - t:.0f} s", flush=True)
    return json.loads((where / "metrics.json").read_text())


def sets(overrides: list[str]) -> list[str]:
    return [a for o in overrides for a in ("--set", o)]


def train_cmd(overrides: list[str], out: Path, args: Args, resume: bool = False) -> list[str]:
    return ["train", "lspet_simplebaseline_r18_128x96", "--quiet", *(["--resume"] if resume else []),
            *sets([*overrides, f"train.out_dir={out}", f"data.root={args.data}"])]  # fmt: skip


def run_setting(key: str, args: Args) -> dict[str, list[Path]]:
    s = SETTINGS[key]
    variants = s.variants()
    if args.core:  # the acceptance pair only
        variants = {n: o for n, o in variants.items() if n in (BACKBONE, variant_name(DEFAULT))}
    if args.only:  # e.g. a second process for one variant while another trains the rest
        variants = {n: o for n, o in variants.items() if any(w in n for w in args.only)}
    # Seed by seed, so that a stopped session leaves whole pairs to compare.
    jobs = [(name, seed, args.out / key / f"{slug(name)}_s{seed}", o) for seed in args.seeds
            for name, o in variants.items() if seed in s.seeds_of(name, args.seeds)]  # fmt: skip
    if args.report_only:  # what has finished, however many seeds
        jobs = [j for j in jobs if (j[2] / "done").is_file()]
    print(f"{key}: {s.label}, {len(jobs)} runs", flush=True)

    def go(job):
        name, seed, out, o = job
        run(train_cmd([*s.overrides(), *o, f"train.seed={seed}"], out, args), out)

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(go, jobs))
    runs: dict[str, list[Path]] = {}
    for name, _, out, _ in jobs:
        runs.setdefault(name, []).append(out)
    return runs


def run_boost(args: Args) -> dict[str, list[Path]]:
    """On each trained slim18 backbone: N more epochs of the backbone at its final learning rate,
    or `poserenet boost` (PoseReNet default, backbone frozen) for M epochs of about the same
    wall time (a frozen backbone runs forward only)."""
    s = SETTINGS["slim18"]
    more_name, boost_name = (
        f"{BACKBONE}, {args.more_epochs} more epochs",
        f"{BACKBONE}, + boost {args.boost_epochs} epochs (frozen)",
    )
    jobs, runs = [], {more_name: [], boost_name: []}
    for seed in args.seeds:
        base = args.out / "slim18" / f"{slug(BACKBONE)}_s{seed}"
        more, boost = args.out / "boost" / f"more_s{seed}", args.out / "boost" / f"boost_s{seed}"
        runs[more_name].append(more)
        runs[boost_name].append(boost)
        if args.report_only:
            continue
        if not (base / "done").is_file():
            sys.exit(f"boost: the slim18 backbone {base} has not finished; run --settings slim18 first")
        total = s.epochs + args.more_epochs
        if not (more / "done").is_file():
            more.mkdir(parents=True, exist_ok=True)
            shutil.copy(base / "last.pth", more / "last.pth")
            o = [*s.overrides(), f"train.seed={seed}", f"train.epochs={total}", f"train.val_every={total}"]
            jobs.append((train_cmd(o, more, args, resume=True), more))
        # The boost's own epochs (--epochs), at a constant learning rate.
        o = [*BASE, *s.model, f"train.seed={seed}", "train.lr_steps=[100]", f"train.val_every={args.boost_epochs}",
             f"data.root={args.data}"]  # fmt: skip
        jobs.append(
            (
                ["boost", str(base / "last.pth"), "--epochs", str(args.boost_epochs), "--out", str(boost), "--quiet", *sets(o)],
                boost,
            )
        )
    if args.report_only:
        return {n: [o for o in outs if (o / "done").is_file()] for n, outs in runs.items()}
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda j: run(*j), jobs))
    return runs


# --------------------------------------------------------------------------- report
def read_run(out: Path, skip_epochs: int = 0) -> dict:
    """Metrics and training time of one run (boost runs: boost.json's boosted metrics)."""
    m = json.loads((out / "metrics.json").read_text())
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    seconds = sum(r["train_seconds"] for r in log if r["epoch"] > skip_epochs)
    curve = [(r["epoch"], r["val_PCK@0.2"], r.get("val_backbone_PCK@0.2")) for r in log if "val_PCK@0.2" in r]
    return {"metrics": m, "train_seconds": seconds, "curve": curve}


def evaluated_with(out: Path, args: Args, name: str, overrides: list[str]) -> dict:
    """A finished run evaluated again with other settings (cached in the run as eval_NAME.json)."""
    path = out / f"eval_{name}.json"
    if not path.is_file():
        cmd = ["eval", str(out / "config.yaml"), str(out / "last.pth"), "--json", str(path), "--out", str(out / f"eval_{name}"),
               "--quiet", *sets([*overrides, f"data.root={args.data}"])]  # fmt: skip
        r = subprocess.run([sys.executable, "-m", "poserenet", *cmd], capture_output=True, text=True, cwd=REPO,
                           env={**os.environ, "OMP_NUM_THREADS": "2"})  # fmt: skip
        if r.returncode != 0:
            raise RuntimeError(f"{out}: {r.stderr[-2000:]}")
    return json.loads(path.read_text())


def refined_scores(out: Path, args: Args) -> dict:
    """A PoseReNet run evaluated with `model.poserenet.scores=refined`."""
    return evaluated_with(out, args, "refined_scores", ["model.poserenet.scores=refined"])


def unbounded(out: Path, args: Args) -> dict:
    """A PoseReNet run evaluated with `model.poserenet.max_move=0`: refined keypoints may move
    any distance from the backbone's."""
    return evaluated_with(out, args, "unbounded", ["model.poserenet.max_move=0"])


def decoded_at_2x(out: Path, args: Args) -> dict:
    """A backbone run scored with its heatmaps upsampled 2x (linearly, 1x pixel i on 2x pixel 2i,
    as PoseReNet's `up2`) before the flip test and DARK: what decoding at the default PoseReNet's
    output resolution gives without the plug-in (cached in the run)."""
    path = out / "eval_decoded_at_2x.json"
    if not path.is_file():
        import torch

        from poserenet.checkpoint import load_weights, read_state_dict
        from poserenet.config import load_config
        from poserenet.evaluate import evaluate_model
        from poserenet.models.plugin import up2
        from poserenet.pipeline import build_meta, build_model, load_split

        class Upsampled(torch.nn.Module):
            def __init__(self, model: torch.nn.Module):
                super().__init__()
                self.model = model

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return up2(self.model(x))

        cfg = load_config(out / "config.yaml", [f"data.root={args.data}"])
        meta = build_meta(cfg)
        model = build_model(cfg, meta)
        load_weights(model, read_state_dict(out / "last.pth"), source=str(out))
        metrics = evaluate_model(Upsampled(model).eval(), cfg, meta, load_split(cfg, meta, "val"), progress=False)
        path.write_text(json.dumps(metrics))
    return json.loads(path.read_text())


PROFILE_RADII = (0.05, 0.1, 0.2, 0.5)


def error_profile(out: Path, args: Args) -> dict[str, float]:
    """Where a run's keypoints land, independent of how people are ranked: PCK within 0.05 to
    0.5 torso lengths, and the mean OKS per person (what AP's thresholds cut)."""
    import numpy as np

    from poserenet.annotations import read_coco_file
    from poserenet.meta import load_meta
    from poserenet.metrics import match_to_ground_truth, oks, pck, pck_normalizer

    meta = load_meta("lsp14")
    gt_doc = read_coco_file(Path(args.data) / "lspet_val.json", meta)[0]
    people, coords = match_to_ground_truth(gt_doc, json.loads((out / "results_val.json").read_text()), meta.sigmas)
    gt = np.array([np.reshape(p["keypoints"], (-1, 3)) for p in people], dtype=np.float64)
    norm, _ = pck_normalizer(gt, np.array([p["bbox"] for p in people]), meta.torso)
    profile = {f"PCK@{r:g}": 100 * pck(coords, gt, norm, r)[0] for r in PROFILE_RADII}
    per_person = [oks(g, c[None], p["area"], meta.sigmas)[0] for g, c, p in zip(gt, coords, people)]
    profile["mean OKS"] = 100 * float(np.mean(np.nan_to_num(per_person)))
    return profile


def mean_std(values: list[float]) -> list[float]:
    return [statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0]


def summarize(name: str, runs: list[dict]) -> dict:
    ms = [r["metrics"] for r in runs]
    row = {"variant": name, "n": len(ms)}
    for key in ("PCK@0.2", "AP", "AP50", "AP75", "APM", "APL", "AR"):
        row[key] = mean_std([100 * m[key] for m in ms])
    row["PCK per seed"] = [round(100 * m["PCK@0.2"], 2) for m in ms]
    row["AP per seed"] = [round(100 * m["AP"], 2) for m in ms]
    joints = ms[0]["PCK@0.2 per joint"]
    row["per joint"] = {j: statistics.mean(100 * m["PCK@0.2 per joint"][j] for m in ms) for j in joints}
    if "backbone" in ms[0]:
        row["backbone output"] = {k: mean_std([100 * m["backbone"][k] for m in ms]) for k in ("PCK@0.2", "AP")}
    profiles = [r["profile"] for r in runs if r.get("profile")]
    if profiles:
        row["error profile"] = {k: statistics.mean(p[k] for p in profiles) for k in profiles[0]}
    row["train minutes"] = statistics.mean(r["train_seconds"] for r in runs) / 60
    row["curves"] = [r["curve"] for r in runs]
    return row


def report(results: dict[str, dict[str, list[Path]]], args: Args) -> None:
    from poserenet import create_model
    from poserenet.complexity import measure
    from poserenet.config import load_config

    summary = {"seeds": args.seeds, "default": DEFAULT, "settings": {}}
    for key, runs in results.items():
        if not any(runs.values()):
            continue
        rows = []
        for name, outs in runs.items():
            if not outs:
                continue
            skip = SETTINGS["slim18"].epochs if key == "boost" and "more epochs" in name else 0
            read = [read_run(o, skip) for o in outs]
            for r, o in zip(read, outs):
                r["profile"] = error_profile(o, args) if (o / "results_val.json").is_file() else None
            row = summarize(label(name), read)
            row["seeds"] = [int(o.name.rsplit("_s", 1)[1]) for o in outs]
            if name == BACKBONE and key in SETTINGS:  # the same models, decoded at the plug-in's 2x
                at_2x = [decoded_at_2x(o, args) for o in outs]
                row["decoded at 2x"] = {k: mean_std([100 * m[k] for m in at_2x]) for k in ("PCK@0.2", "AP")}
            if name == variant_name(DEFAULT):  # the same models, scored with the refined maps' maxima
                refined = [refined_scores(o, args) for o in outs]
                row["refined scores"] = {k: mean_std([100 * m[k] for m in refined]) for k in ("PCK@0.2", "AP")}
                free = [unbounded(o, args) for o in outs]
                row["unbounded"] = {k: mean_std([100 * m[k] for m in free]) for k in ("PCK@0.2", "AP")}
                free_profiles = [error_profile(o / "eval_unbounded", args) for o in outs]
                row["error profile, max_move 0"] = {k: statistics.mean(p[k] for p in free_profiles) for k in free_profiles[0]}
            cfg = load_config(outs[0] / "config.yaml")
            cost = measure(
                create_model(cfg.model.name, 14, poserenet=cfg.model.poserenet, **cfg.model.kwargs), tuple(cfg.data.input_hw)
            )
            row.update(params=cost.params_m, gflops=cost.gflops)
            rows.append(row)
        title = (
            SETTINGS[key].label
            if key in SETTINGS
            else f"boost on the slim18 backbones ({args.more_epochs} more epochs vs boost {args.boost_epochs})"
        )
        summary["settings"][key] = {"label": title, "rows": rows}
    out = REPO / "benchmarks" / "results" / "ablation_summary.json"
    if out.is_file():  # the record of runs trained elsewhere, or by an earlier invocation
        summary = with_stored(summary, json.loads(out.read_text()))
    if not summary["settings"]:
        print(f"no finished runs in {args.out} to report")
        return
    out.write_text(json.dumps(summary, indent=1))
    table = markdown(summary)
    args.docs.mkdir(parents=True, exist_ok=True)  # --docs may name a folder not made yet
    (args.docs / "ablation_table.md").write_text(table)
    plot(summary, args.docs / "ablation.png")
    print(table)


# Row fields with one entry per seed; every other [mean, std] pair, mean or dict is pooled.
PER_SEED = ("PCK per seed", "AP per seed", "seeds", "curves")
AS_IS = ("variant", "params", "gflops")


def merge_rows(a: dict, b: dict) -> dict:
    """One row from two rows of the same variant on different seeds, exactly as if its runs had
    been summarised together: pooled means and sample standard deviations."""
    na, nb = a["n"], b["n"]

    def pool(x, y):
        if isinstance(x, dict):
            return {k: pool(x[k], y[k]) for k in x if k in y}
        if isinstance(x, list):  # [mean, std]
            (ma, sa), (mb, sb) = x, y
            n, mean = na + nb, (na * ma + nb * mb) / (na + nb)
            squares = (na - 1) * sa**2 + na * ma**2 + (nb - 1) * sb**2 + nb * mb**2
            return [mean, math.sqrt(max(0.0, squares - n * mean**2) / (n - 1))]
        return (na * x + nb * y) / (na + nb)

    row = {}
    for k in a:
        if k in AS_IS:
            row[k] = a[k]
        elif k == "n":
            row[k] = na + nb
        elif k in PER_SEED:
            row[k] = a[k] + b[k]
        elif k in b:
            row[k] = pool(a[k], b[k])
    order = sorted(range(row["n"]), key=lambda i: row["seeds"][i])
    for k in PER_SEED:
        row[k] = [row[k][i] for i in order]
    return row


def with_stored(summary: dict, stored: dict) -> dict:
    """The runs on disk over the stored summary (benchmarks/results/ablation_summary.json, the
    record that outlives runs/): a variant's rows on disjoint seeds are merged, a row on disk
    that has the stored seeds replaces it, and rows and settings with no runs on disk are kept."""
    seeds = sorted(set(stored["seeds"]) | set(summary["seeds"]))
    merged = {**stored, "seeds": seeds, "default": summary["default"], "settings": dict(stored["settings"])}
    for key in [k for k in stored["settings"] if k not in summary["settings"]]:
        print(f"  {key}: no runs on disk, kept from the stored summary")
    for key, setting in summary["settings"].items():
        old = {r["variant"]: r for r in stored["settings"].get(key, {}).get("rows", [])}
        new = {r["variant"]: r for r in setting["rows"]}
        rows = []
        for name in [*old, *(n for n in new if n not in old)]:
            if name not in new:
                rows.append(old[name])
                print(f"  {key}: {name}: kept from the stored summary (seeds {old[name]['seeds']})")
            elif name in old and not set(old[name]["seeds"]) & set(new[name]["seeds"]):
                rows.append(merge_rows(old[name], new[name]))
                print(f"  {key}: {name}: stored seeds {old[name]['seeds']} + seeds {new[name]['seeds']} on disk")
            else:
                if name in old and not set(old[name]["seeds"]) <= set(new[name]["seeds"]):
                    print(f"  {key}: {name}: seeds {new[name]['seeds']} on disk replace the stored {old[name]['seeds']}")
                rows.append(new[name])
        merged["settings"][key] = {**setting, "rows": rows}
    return merged


def pm(v: list[float], n: int) -> str:
    return f"{v[0]:.1f} ± {v[1]:.1f}" if n > 1 else f"{v[0]:.1f}"


def gain(value: float, reference: float) -> str:
    return f"{round(value - reference, 1) + 0.0:+.1f}"  # + 0.0: no "-0.0"


def per_seed(row: dict, first: dict, seeds: list[int]) -> str:
    """PCK / AP of each seed and the gain over the first row's same seed (the pairs share their
    initial backbone weights, data order and augmentations); a row with other seeds than the
    report's names them."""
    named = row["seeds"] != seeds
    ref = {} if row is first else dict(zip(first["seeds"], zip(first["PCK per seed"], first["AP per seed"])))
    parts = []
    for pck, ap, seed in zip(row["PCK per seed"], row["AP per seed"], row["seeds"]):
        notes = ([f"seed {seed}"] if named else []) + ([f"{gain(pck, ref[seed][0])} / {gain(ap, ref[seed][1])}"] if seed in ref else [])
        parts.append(f"{pck:.1f} / {ap:.1f}" + (f" ({', '.join(notes)})" if notes else ""))
    return ", ".join(parts)


def markdown(summary: dict) -> str:
    lines = []
    for s in summary["settings"].values():
        lines += [f"**{s['label']}**", "",
                  "| variant | PCK@0.2 | AP | APM | APL | backbone output PCK / AP (backbone alone: its maps decoded at 2x) | train min | params (M) | GFLOPs | PCK / AP per seed (gain over the first row's same seed) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
        for r in s["rows"]:
            n = r["n"]
            bb = r.get("backbone output")
            bb = f"{pm(bb['PCK@0.2'], n)} / {pm(bb['AP'], n)}" if bb else ""
            if "decoded at 2x" in r:
                d2 = r["decoded at 2x"]
                bb += f"decoded at 2x: {pm(d2['PCK@0.2'], n)} / {pm(d2['AP'], n)}"
            if "refined scores" in r:
                rs, ub = r["refined scores"], r["unbounded"]
                bb += f" (AP with the refined maps' scores: {pm(rs['AP'], n)}; with max_move 0: {pm(ub['PCK@0.2'], n)} / {pm(ub['AP'], n)})"
            lines.append(f"| {r['variant']} | {pm(r['PCK@0.2'], n)} | {pm(r['AP'], n)} | {pm(r['APM'], n)} | {pm(r['APL'], n)} | {bb} "
                         f"| {r['train minutes']:.1f} | {r['params']:.3f} | {r['gflops']:.3f} | {per_seed(r, s['rows'][0], summary['seeds'])} |")  # fmt: skip
        lines.append("")
        profiled = [r for r in s["rows"] if "error profile" in r]
        if profiled:
            keys = list(profiled[0]["error profile"])
            lines += ["Where the keypoints land, whatever the ranking (mean over seeds): PCK within 0.05 to 0.5 torso lengths, "
                      "mean OKS per person:", "",
                      "| variant | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]  # fmt: skip
            for r in profiled:
                for suffix in ("", ", max_move 0"):  # the default also as it was before the bound
                    if f"error profile{suffix}" in r:
                        shown = " | ".join(f"{r[f'error profile{suffix}'][k]:.1f}" for k in keys)
                        lines.append(f"| {r['variant']}{suffix} | {shown} |")
            lines.append("")
        base = next((r for r in s["rows"] if r["variant"] == BACKBONE), s["rows"][0])
        joints = list(base["per joint"])
        lines += ["Per-joint PCK@0.2 (mean over seeds):", "",
                  "| variant | " + " | ".join(joints) + " |", "|---|" + "---:|" * len(joints)]  # fmt: skip
        for r in s["rows"]:
            lines.append(f"| {r['variant']} | " + " | ".join(f"{r['per joint'][j]:.1f}" for j in joints) + " |")
        lines.append("")
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = list(summary["settings"].values())
    fig, axes = plt.subplots(len(settings), 4, figsize=(20, 2.4 + 2.8 * len(settings)), squeeze=False)
    for row_axes, s in zip(axes, settings):
        rows = s["rows"]
        names = [r["variant"] for r in rows][::-1]
        for ax, key in zip(row_axes[:2], ("PCK@0.2", "AP")):
            means = [r[key][0] for r in rows][::-1]
            stds = [r[key][1] for r in rows][::-1]
            colors = ["#1f77b4" if ("PoseReNet" in n or "boost" in n) else "#888888" for n in names]
            ax.barh(names, means, xerr=stds, color=colors, capsize=3)
            ax.axvline(rows[0][key][0], color="#444444", ls="--", lw=1)
            lo = min(m - sd for m, sd in zip(means, stds))
            ax.set_xlim(max(0, lo - 2), max(m + sd for m, sd in zip(means, stds)) + 1)
            ax.set_xlabel(f"{key} (%)")
            ax.set_title(s["label"], fontsize=9)
            ax.grid(axis="x", alpha=0.3)
            if key == "AP":  # the same rows as the PCK panel beside it
                ax.set_yticklabels([])
        ax = row_axes[2]  # per-joint gain of each PoseReNet row over the first row
        base = rows[0]["per joint"]
        joints = list(base)
        for r in rows[1:]:
            ax.plot(range(len(joints)), [r["per joint"][j] - base[j] for j in joints], marker="o", ms=3, label=r["variant"])
        ax.axhline(0, color="#444444", lw=1)
        ax.set_xticks(range(len(joints)), [j.replace("_", " ") for j in joints], rotation=60, fontsize=7)
        ax.set_ylabel(f"PCK@0.2 minus {rows[0]['variant']}", fontsize=8)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        ax = row_axes[3]  # validation curves, mean over seeds; dotted: a PoseReNet model's own backbone output
        if max(len(c) for r in rows for c in r["curves"]) < 2:  # scored after the last epoch only
            ax.axis("off")
            continue
        for i, r in enumerate(rows):
            points: dict[int, list] = {}
            for curve in r["curves"]:
                for epoch, refined, backbone in curve:
                    points.setdefault(epoch, []).append((refined, backbone))
            epochs = sorted(points)
            color = f"C{i}"
            ax.plot(
                epochs,
                [100 * statistics.mean(p[0] for p in points[e]) for e in epochs],
                marker="o",
                ms=3,
                color=color,
                label=r["variant"],
            )
            if all(p[1] is not None for e in epochs for p in points[e]):
                ax.plot(epochs, [100 * statistics.mean(p[1] for p in points[e]) for e in epochs], ls=":", color=color)
        ax.set_xlabel("epoch")
        ax.set_ylabel("val PCK@0.2 (%)", fontsize=8)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"LSPET val, mean ± std over seeds {summary['seeds']} (blue: with PoseReNet; dashed: the first row; "
        "curves: dotted = a PoseReNet model's own backbone output)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "lspet"))
    p.add_argument("--settings", nargs="+", default=["slim6", "slim18", "full6", "boost"], choices=[*SETTINGS, "boost"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel (one CPU thread each)")
    p.add_argument("--more-epochs", type=int, default=2, help="boost comparison: more epochs of the backbone")
    p.add_argument("--boost-epochs", type=int, default=5, help="boost comparison: epochs of the boost (about the same wall time)")
    p.add_argument("--core", action="store_true", help="only the backbone and the default PoseReNet (the acceptance pair)")
    p.add_argument("--report-only", action="store_true", help="train nothing: report the runs that have finished")
    p.add_argument("--only", nargs="+", default=[], metavar="TEXT", help="only the variants whose name contains TEXT")
    p.add_argument("--out", default=str(REPO / "runs" / "ablation"))
    p.add_argument("--docs", default=str(REPO / "docs"))
    a = p.parse_args()
    if not Path(a.data, "lspet_train.json").is_file():
        sys.exit(f"LSPET not found in {a.data} (--data)")
    names = [n for k in a.settings if k in SETTINGS for n in SETTINGS[k].variants()]
    if unmatched := [w for w in a.only if not any(w in n for n in names)]:
        sys.exit(f"--only {' '.join(unmatched)}: no variant of {', '.join(a.settings)} has that in its name")
    args = Args(
        a.data, Path(a.out), a.seeds, a.jobs, a.more_epochs, a.boost_epochs, Path(a.docs), a.settings, a.core, a.report_only, a.only
    )
    results = {}
    for key in args.settings:
        if key == "boost":
            results["boost"] = run_boost(args)
        else:
            results[key] = run_setting(key, args)
    report(results, args)


if __name__ == "__main__":
    main()
