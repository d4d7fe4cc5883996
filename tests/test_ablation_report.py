"""The ablation report's bookkeeping (benchmarks/ablation.py): the stored summary is the record
that outlives the runs, so merging it with new runs must give what summarising them all would."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "ablation.py"


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("ablation_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def fake_run(rng: np.random.Generator) -> dict:
    keys = ("PCK@0.2", "AP", "AP50", "AP75", "APM", "APL", "AR")
    metrics = {k: float(rng.uniform(0.1, 0.4)) for k in keys}
    metrics["PCK@0.2 per joint"] = {j: float(rng.uniform(0, 1)) for j in ("neck", "head_top")}
    metrics["backbone"] = {k: float(rng.uniform(0.1, 0.4)) for k in ("PCK@0.2", "AP")}
    profile = {"PCK@0.5": float(rng.uniform(50, 70)), "mean OKS": float(rng.uniform(50, 70))}
    return {"metrics": metrics, "train_seconds": float(rng.uniform(600, 900)), "curve": [(6, 0.2, 0.1)], "profile": profile}


def summarised(ablation, runs: list[dict], seeds: list[int]) -> dict:
    row = ablation.summarize("v", runs)
    row.update(seeds=seeds, params=1.0, gflops=2.0)
    return row


def assert_rows_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], dict):
            assert_rows_equal(a[k], b[k])
        elif isinstance(a[k], (int, float)) or (isinstance(a[k], list) and a[k] and isinstance(a[k][0], float)):
            np.testing.assert_allclose(a[k], b[k], rtol=1e-9, atol=1e-9, err_msg=k)
        else:
            assert a[k] == b[k], k


@pytest.mark.parametrize("split", [1, 2])
def test_merging_stored_and_new_seeds_equals_summarising_all(ablation, split):
    rng = np.random.default_rng(split)
    runs = [fake_run(rng) for _ in range(3)]
    whole = summarised(ablation, runs, [0, 1, 2])
    # The stored row has the later seeds (as full6's detached row had seeds 1 and 2), the new one the rest.
    stored, new = summarised(ablation, runs[split:], list(range(split, 3))), summarised(ablation, runs[:split], list(range(split)))
    assert_rows_equal(ablation.merge_rows(stored, new), whole)


def test_the_stored_summary_keeps_what_is_not_on_disk(ablation):
    rng = np.random.default_rng(0)
    runs = [fake_run(rng) for _ in range(3)]

    def row(name, idx):
        return {**summarised(ablation, [runs[i] for i in idx], list(idx)), "variant": name}

    stored = {"seeds": [0, 1, 2], "default": "lifted", "settings": {
        "a": {"label": "A", "rows": [row("backbone", [0, 1, 2]), row("detached", [1, 2])]},
        "b": {"label": "B", "rows": [row("backbone", [0, 1, 2])]},
    }}  # fmt: skip
    on_disk = {"seeds": [0], "default": "lifted", "settings": {"a": {"label": "A", "rows": [row("detached", [0]), row("scaled", [0])]}}}
    merged = ablation.with_stored(on_disk, stored)
    assert merged["seeds"] == [0, 1, 2] and list(merged["settings"]) == ["a", "b"]
    rows = merged["settings"]["a"]["rows"]
    assert [r["variant"] for r in rows] == ["backbone", "detached", "scaled"]
    assert rows[0] == stored["settings"]["a"]["rows"][0]  # no run on disk: kept as it was
    assert rows[1]["seeds"] == [0, 1, 2] and rows[1]["n"] == 3  # disjoint seeds: merged
    assert rows[2]["seeds"] == [0]  # new variant
    assert merged["settings"]["b"] == stored["settings"]["b"]
    # Runs on disk that cover the stored seeds replace the stored row.
    again = ablation.with_stored({**on_disk, "settings": {"b": {"label": "B", "rows": [row("backbone", [0, 1, 2])]}}}, stored)
    assert again["settings"]["b"]["rows"][0]["n"] == 3
