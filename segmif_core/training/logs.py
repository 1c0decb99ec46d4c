"""The trainer's log: progress messages, ``log.csv`` (truncated to the last checkpoint on resume)
and the plots made from it."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .. import atomic


def _print_flushed(msg: str) -> None:
    """Default progress log: stdout, flushed at once, so that ``segmif train > run.log`` can be
    followed with ``tail -f`` (a redirected stdout is otherwise block-buffered)."""
    print(msg, flush=True)


#: Log-row keys printed as they are on the console line (not averaged over the interval).
_INSTANT = ("step", "round", "phase", "time_s")


class IntervalMeans:
    """The console line of the trainer: the mean of every numeric loss part over the steps since
    the last printed line (as mmsegmentation's text logger), so a part logged on some steps only
    (TSJNet's detection losses with ``joint.det_every`` > 1) is still shown; learning rates,
    lambdas and validation values are the latest. ``log.csv`` keeps every step's own row.

    add(row): one step's log row (dict). line(): the text of the rows added since the last call
    ("key=value" pairs, floats to 4 significant digits; None values left out) and a reset;
    "" when nothing was added.
    """

    def __init__(self):
        self._sums: dict = {}
        self._counts: dict = {}
        self._last: dict = {}

    def add(self, row: dict) -> None:
        for k, v in row.items():
            if v is None:
                continue
            averaged = (isinstance(v, (int, float)) and not isinstance(v, bool)
                        and k not in _INSTANT and not k.startswith(("lr_", "lambda_", "val_")))
            if averaged:
                self._sums[k] = self._sums.get(k, 0.0) + float(v)
                self._counts[k] = self._counts.get(k, 0) + 1
            self._last[k] = v

    def line(self) -> str:
        if not self._last:
            return ""
        out = []
        for k, v in self._last.items():
            if k in self._sums:
                v = self._sums[k] / self._counts[k]
                if isinstance(self._last[k], int):
                    v = round(v, 2)
            out.append(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}")
        self._sums, self._counts, self._last = {}, {}, {}
        return " ".join(out)


def write_plots(log_csv: Path, plot_dir: Path) -> None:
    """PNG plots of losses, lambdas, val mIoU and val fusion quality from the CSV log (atomic
    writes); for a joint (TSJNet) run also its loss parts and val mAP."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(log_csv) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    plot_dir.mkdir(parents=True, exist_ok=True)
    step = np.array([int(r["step"]) for r in rows])

    def series(key):
        v = np.array([float(r[key]) if r.get(key) not in (None, "") else np.nan for r in rows])
        return v

    panels = {"losses": ["seg", "fusion", "fusion_ssim", "fusion_mse", "fusion_grad"],
              "lambdas": ["lambda_fusion", "lambda_seg"], "val_miou": ["val_mIoU"],
              "val_qabf": ["val_Qabf"], "val_sf": ["val_SF"]}
    if "det" in rows[0]:  # a joint (TSJNet) run: its loss parts and val mAP (tsjnet_steps.py)
        panels.update({"joint_losses": ["mff", "recon", "attention", "seg", "det"],
                       "detection_losses": ["det_cls", "det_box", "det_ctr"],
                       "val_map": ["val_mAP50", "val_mAP50_95"]})
    for name, keys in panels.items():
        fig, ax = plt.subplots(figsize=(7, 4))
        for key in keys:
            if key in rows[0]:
                v = series(key)
                ok = ~np.isnan(v)
                if ok.any():
                    ax.plot(step[ok], v[ok], "o-" if name.startswith("val_") else "-", label=key,
                            lw=1)
        ax.set_xlabel("step")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
        fig.tight_layout()
        try:
            atomic.save_figure(fig, plot_dir / f"{name}.png", dpi=90)
        finally:
            plt.close(fig)


def _truncate_log(log_csv: Path, last_step: int) -> list[str] | None:
    """Drop the rows after ``last_step`` (logged after the last checkpoint by a run that was
    killed before it could save), so that a resumed run does not log those steps twice.
    Returns the log's columns (None for a file without a header)."""
    with open(log_csv, newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames
        rows = [r for r in reader if r.get("step", "").isdigit() and int(r["step"]) <= last_step]
    if not fields:
        return None
    with atomic.atomic_open(log_csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    return fields
