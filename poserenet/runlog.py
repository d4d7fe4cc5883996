"""The records of a training run in its directory: `log.jsonl` and `log.csv` (one row per
epoch), TensorBoard events under `tb/` (when tensorboard is installed) and `curves.png`. Every
file is written atomically; under torchrun only rank 0 writes (`enabled`)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from .files import write_atomic, write_text_atomic


class RunLog:
    def __init__(self, out_dir: Path, enabled: bool = True):
        """Starts from the rows an earlier run left in `out_dir` (new rows are appended)."""
        self.out_dir, self.enabled = Path(out_dir), enabled
        path = self.out_dir / "log.jsonl"
        self.rows: list[dict[str, Any]] = (
            [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if enabled and path.is_file() else []
        )
        self.tb = None

    def truncate(self, epoch: int) -> None:
        """Keep only the rows up to `epoch` (the epochs a resumed checkpoint has seen), on disk too."""
        kept = [r for r in self.rows if r["epoch"] <= epoch]
        if len(kept) < len(self.rows):
            self.rows = kept
            self._write()

    def open_tensorboard(self) -> None:
        if not self.enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return
        self.tb = SummaryWriter(str(self.out_dir / "tb"))

    def scalar(self, key: str, value: float, step: int) -> None:
        if self.tb is not None:
            self.tb.add_scalar(key, value, step)

    def append(self, record: dict[str, Any]) -> None:
        """One epoch's row: to the logs, and its numbers to TensorBoard."""
        if not self.enabled:
            return
        self.rows.append(record)
        self._write()
        for k, v in record.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch":
                self.scalar(k.replace("_", "/", 1), v, record["epoch"])

    def close(self, pck_threshold: float = 0.2) -> None:
        if self.enabled and self.rows:
            plot_curves(self.rows, self.out_dir / "curves.png", pck_threshold)
        if self.tb is not None:
            self.tb.close()

    def _write(self) -> None:
        write_text_atomic(self.out_dir / "log.jsonl", "".join(json.dumps(r) + "\n" for r in self.rows))
        keys = list(dict.fromkeys(k for r in self.rows for k in r))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self.rows)
        write_text_atomic(self.out_dir / "log.csv", buf.getvalue())


def plot_curves(rows: list[dict[str, Any]], path: Path, pck_threshold: float = 0.2) -> None:
    """Training loss and validation scores per epoch, as a PNG."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = [r["epoch"] for r in rows]
    ax1.plot(epochs, [r["train_loss"] for r in rows], marker="o", ms=3)
    ax1.set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss")
    pck = f"val_PCK@{pck_threshold:g}"
    for key, label in (("val_AP", "OKS AP"), (pck, f"PCK@{pck_threshold:g}"), ("val_PCKh Mean", "PCKh@0.5")):
        pts = [(r["epoch"], 100 * r[key]) for r in rows if key in r]
        if pts:
            ax2.plot(*zip(*pts), marker="o", ms=3, label=label)
    ax2.set(xlabel="epoch", ylabel="%", title="validation")
    if ax2.lines:
        ax2.legend()
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.tight_layout()
    try:
        write_atomic(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(fig)
