"""The run directory's records (poserenet/runlog.py): what a resumed run keeps, and what reaches
TensorBoard."""

import json

from poserenet.runlog import RunLog


class FakeWriter:
    def __init__(self):
        self.scalars, self.closed = [], False

    def add_scalar(self, key, value, step):
        self.scalars.append((key, value, step))

    def close(self):
        self.closed = True


def test_a_resumed_log_keeps_the_checkpoints_epochs_and_appends(tmp_path):
    log = RunLog(tmp_path)
    log.tb = FakeWriter()
    for epoch in (1, 2, 3):
        log.append({"epoch": epoch, "lr": 1e-3, "train_loss": 1.0 / epoch, "val_AP": 0.1 * epoch, "ok": True})
    assert ("train/loss", 0.5, 2) in log.tb.scalars and ("val/AP", 0.1, 1) in log.tb.scalars
    assert not any(k in ("epoch", "ok") for k, _, _ in log.tb.scalars)  # the step and flags are not curves

    resumed = RunLog(tmp_path)
    resumed.truncate(2)  # the checkpoint saw two epochs: the third row goes
    assert [r["epoch"] for r in resumed.rows] == [1, 2]
    assert [json.loads(line)["epoch"] for line in (tmp_path / "log.jsonl").read_text().splitlines()] == [1, 2]
    resumed.append({"epoch": 3, "lr": 1e-4, "train_loss": 0.3})
    assert (tmp_path / "log.csv").read_text().splitlines()[0] == "epoch,lr,train_loss,val_AP,ok"
    resumed.close()
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_only_the_main_process_writes(tmp_path):
    log = RunLog(tmp_path / "run", enabled=False)
    log.open_tensorboard()
    log.append({"epoch": 1, "train_loss": 1.0})
    log.close()
    assert not (tmp_path / "run").exists()
