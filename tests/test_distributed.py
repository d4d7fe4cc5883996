"""Scaling and robustness of training: DDP on CPU (gloo) through torchrun, accumulation, mixed
precision, exact resume after SIGKILL, logs."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from poserenet.cli import main

TINY = ["model.name=simplebaseline_r18", "model.kwargs={base_width: 8, deconv_channels: 16}"]


def args_for(root, out, *extra):
    base = [f"data.root={root}", f"train.out_dir={out}", "data.num_workers=0", "eval.batch_size=16",
            "train.lr_steps=[100]", "train.deterministic=true", *TINY, *extra]  # fmt: skip
    return [a for o in base for a in ("--set", o)]


def weights(path):
    return torch.load(path, weights_only=True)["model"]


def log_rows(out):
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def run_cli(argv, timeout=240):
    return subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_two_gloo_processes_match_one_process(tiny_synth, tmp_path):
    """torchrun with 2 CPU processes (per-process batch 4) against 1 process (batch 8): the same
    global batches, so with BatchNorm statistics frozen the same loss and weights."""
    common = ["train.epochs=1", "train.freeze_bn=true", "train.val_every=100"]
    ddp_out, single_out = tmp_path / "ddp", tmp_path / "single"
    r = run_cli(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "poserenet", "train",
                 "synth_r18slim_128x96_dark", "--quiet", *args_for(tiny_synth, ddp_out, *common, "train.batch_size=4")])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "2 processes on cpu" in r.stdout
    assert main(["train", "synth_r18slim_128x96_dark", "--quiet", *args_for(tiny_synth, single_out, *common, "train.batch_size=8")]) == 0
    ddp_log, single_log = log_rows(ddp_out)[-1], log_rows(single_out)[-1]
    assert ddp_log["ranks_in_sync"] is True
    assert ddp_log["train_images"] == single_log["train_images"] == 48
    assert ddp_log["train_loss"] == pytest.approx(single_log["train_loss"], rel=1e-5)
    a, b = weights(ddp_out / "last.pth"), weights(single_out / "last.pth")
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_gradient_accumulation_equals_a_larger_batch(tiny_synth, tmp_path):
    common = ["train.epochs=1", "train.freeze_bn=true", "train.val_every=100"]
    assert main(["train", "synth_r18slim_128x96_dark", "--quiet", *args_for(tiny_synth, tmp_path / "a", *common, "train.batch_size=4", "train.accumulate=2")]) == 0
    assert main(["train", "synth_r18slim_128x96_dark", "--quiet", *args_for(tiny_synth, tmp_path / "b", *common, "train.batch_size=8")]) == 0
    a, b = weights(tmp_path / "a" / "last.pth"), weights(tmp_path / "b" / "last.pth")
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_weights(tiny_synth, tmp_path):
    common = ["train.epochs=3", "train.batch_size=8", "train.checkpoint_every=2", "train.val_every=100",
              "model.kwargs={base_width: 16, deconv_channels: 32}"]  # fmt: skip
    whole = tmp_path / "whole"
    assert main(["train", "synth_r18slim_128x96_dark", "--quiet", *args_for(tiny_synth, whole, *common)]) == 0

    cut = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "poserenet", "train", "synth_r18slim_128x96_dark", "--quiet",
                             *args_for(tiny_synth, cut, *common)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.time() + 120
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        if (cut / "last.pth").is_file():
            ckpt = torch.load(cut / "last.pth", weights_only=True)  # never half-written: renamed into place
            if ckpt["step"] > 0:  # a mid-epoch checkpoint: kill right now
                proc.send_signal(signal.SIGKILL)
                killed_at = (ckpt["epoch"], ckpt["step"])
                break
        time.sleep(0.02)
    proc.wait(timeout=30)
    assert killed_at is not None and proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]
    torch.load(cut / "last.pth", weights_only=True)
    assert main(["train", "synth_r18slim_128x96_dark", "--quiet", "--resume", *args_for(tiny_synth, cut, *common)]) == 0
    a, b = weights(whole / "last.pth"), weights(cut / "last.pth")
    assert all(torch.equal(a[k], b[k]) for k in a), f"killed at epoch/step {killed_at}"
    assert [r["epoch"] for r in log_rows(cut)] == [1, 2, 3]
    assert [r["train_loss"] for r in log_rows(cut)] == pytest.approx([r["train_loss"] for r in log_rows(whole)], rel=1e-12)
    assert not list(cut.glob("*.tmp"))


def test_logs_checkpoints_and_precision_options(tiny_synth, tmp_path):
    out = tmp_path / "run"
    extra = ["train.epochs=4", "train.keep_last=2", "train.amp=bf16", "train.channels_last=true", "train.clip_grad_norm=1.0",
             "train.val_every=2", "train.batch_size=8"]  # fmt: skip
    assert main(["train", "synth_r18slim_128x96_dark", "--quiet", *args_for(tiny_synth, out, *extra)]) == 0
    assert sorted(p.name for p in out.glob("epoch_*.pth")) == ["epoch_0003.pth", "epoch_0004.pth"]
    assert (out / "best.pth").is_file() and (out / "curves.png").stat().st_size > 5000
    csv_lines = (out / "log.csv").read_text().splitlines()
    assert csv_lines[0].startswith("epoch,lr,train_loss") and len(csv_lines) == 5 and "val_AP" in csv_lines[0]
    rows = log_rows(out)
    assert all(torch.isfinite(torch.tensor(r["train_loss"])) for r in rows) and "val_AP" in rows[1] and "val_AP" not in rows[0]


def test_channels_last_by_default_on_cpus_only():
    """train.channels_last "auto": on for CPU training, off on GPUs; explicit settings kept."""
    from poserenet.config import TrainConfig
    from poserenet.train import channels_last_for

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert channels_last_for(TrainConfig(), cpu) and not channels_last_for(TrainConfig(), gpu)
    assert not channels_last_for(TrainConfig(channels_last=False), cpu) and channels_last_for(TrainConfig(channels_last=True), gpu)


@pytest.mark.parametrize("option, message", [
    ("train.amp=fp16", "fp16 needs a GPU; on CPUs use bf16"),
    ("train.sync_bn=true", "SyncBatchNorm has no CPU implementation"),
    ("train.amp=int8", "train.amp must be one of none, bf16, fp16, got 'int8'"),
    ("train.channels_last=yes please", "train.channels_last must be true, false or auto"),
    ("train.best_metric=APX", "train.best_metric must be a validation metric (AP, AP50"),
])  # fmt: skip
def test_option_errors(tiny_synth, tmp_path, option, message, capsys):
    if torch.cuda.is_available() and "GPU" in message:
        pytest.skip("a GPU is present")
    assert main(["train", "synth_r18slim_128x96_dark", "--quiet", *args_for(tiny_synth, tmp_path / "r", "train.epochs=1", option)]) == 2
    assert message in capsys.readouterr().err
