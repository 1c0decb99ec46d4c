"""Write an evaluation report to a folder: ``report.json``, ``report.md`` and the plots.

Shared by ``segmif evaluate``, ``segmif bag eval`` and the demo. Input is the report dict of
:mod:`segmif_core.evaluation` (optionally with ``stream``, ``frames`` and ``mosaics`` from a bag
evaluation). Files written, each atomically (:mod:`segmif_core.atomic`):

* ``report.md``: protocol, a segmentation table in the style of the SegMiF paper's Tables 1/2
  (one row per method: IoU per class, mIoU, mAcc), for a model with a detector (TSJNet) a
  detection table (AP@0.5 per class, mAP@0.5, mAP@0.5:0.95, ground-truth boxes), a fusion
  table (one row per method: EN SD SF AG MI SCD VIF Qabf SSIM, MI in bits) with the metric
  conventions, then stream/timing sections when present;
* ``fusion_violins.png``: one panel per fusion metric, one violin per method across the pairs
  (like the paper's Fig. 8), individual pairs as dots and the mean as a bar;
* ``confusion_matrix.png``: the segmentation confusion matrix, rows (ground truth) normalised to
  100 %, with class names (only when labelled pixels were evaluated; a stale one is removed);
* ``report.json``: the report dict with ``files`` (the names written), last.

matplotlib is imported only here (Agg backend, no display needed).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from . import atomic
from .evaluation import write_json_atomic
from .metrics.fusion import FUSION_METRIC_KEYS

REPORT_JSON, REPORT_MD = "report.json", "report.md"
VIOLINS_PNG, CONFUSION_PNG = "fusion_violins.png", "confusion_matrix.png"

#: Units / notes shown with each fusion metric.
METRIC_UNITS = {"EN": "bits", "SD": "grey levels", "SF": "grey levels", "AG": "grey levels",
                "MI": "bits, sum of 2", "SCD": "sum of 2", "VIF": "sum of 2", "Qabf": "0-0.975",
                "SSIM": "sum of 2"}

#: Published numbers, for orientation only (other data, splits, model sizes or evaluators).
PUBLISHED = [
    "SegMiF paper (Liu et al., ICCV 2023) Table 1, MFNet test split (393 pairs, MiT-B3): mIoU "
    "SegMiF 56.1, visible-only 45.9, thermal-only 49.9 (released weights reproduce about 53.8).",
    "SegMiF paper Table 2, FMB test split (280 pairs): mIoU SegMiF 54.8, visible-only 50.5, "
    "thermal-only 43.9.",
    "SegMiF fusion on MSRS measured by EMMA (CVPR 2024): EN 5.95, SD 37.28, SF 11.10, AG 3.47, "
    "SCD 1.57, VIF 0.88 (their evaluator divides SF by the number of differences, uses central "
    "differences for AG and nats for MI).",
]


# ----------------------------------------------------------------------------------- helpers
def _fmt(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _atomic_png(fig, path: Path) -> None:
    atomic.save_figure(fig, path, format="png", dpi=100, bbox_inches="tight")


def _pyplot():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def protocol_sentence(protocol: Mapping) -> str:
    """One line saying how mIoU/mAcc were averaged."""
    bg = "class 0 (unlabelled) included" if protocol.get("include_background", True) \
        else "class 0 (unlabelled) excluded"
    undefined = ("classes with an undefined metric (IoU: no ground truth and no prediction; "
                 "Acc: no ground truth)")
    mode = protocol.get("absent", "skip")
    absent = (f"{undefined} skipped in the means" if mode == "skip"
              else f"{undefined} counted as 0 in the means" if mode == "zero"
              else "means over the classes present in the ground truth only (a class without "
                   "ground-truth pixels is left out, even when predicted)")
    return f"{bg}; {absent}"


# -------------------------------------------------------------------------------------- plots
def plot_fusion_violins(report: Mapping, path: Path) -> bool:
    """Violin plot per fusion metric, one violin per method. Returns False (nothing written)
    when the report has no fusion value."""
    per = report.get("fusion_per_image") or {}
    methods = [m for m in report.get("methods") or per.keys() if m in per]
    if not methods or not any(v is not None for m in methods for k in FUSION_METRIC_KEYS
                              for v in per[m].get(k, [])):
        return False
    plt = _pyplot()
    n = len(FUSION_METRIC_KEYS)
    cols = 3
    rows = int(math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols + max(0, len(methods) - 5) * 0.8,
                                                  3.4 * rows), squeeze=False)
    colors = plt.get_cmap("tab10").colors
    for ax, key in zip(axes.ravel(), FUSION_METRIC_KEYS):
        for i, m in enumerate(methods):
            vals = np.array([v for v in per[m].get(key, []) if v is not None], np.float64)
            if vals.size == 0:
                continue
            c = colors[i % len(colors)]
            if vals.size >= 2 and np.ptp(vals) > 1e-12:
                parts = ax.violinplot([vals], positions=[i], widths=0.8, showextrema=False)
                for body in parts["bodies"]:
                    body.set_facecolor(c)
                    body.set_edgecolor("black")
                    body.set_alpha(0.45)
            jitter = (np.random.default_rng(i).random(vals.size) - 0.5) * 0.15
            ax.scatter(i + jitter, vals, s=8, color=c, edgecolors="none", zorder=3)
            ax.hlines(vals.mean(), i - 0.3, i + 0.3, color="black", linewidth=1.5, zorder=4)
        ax.set_title(f"{key} ({METRIC_UNITS.get(key, '')})", fontsize=10)
        ax.set_xticks(range(len(methods)))
        ax.set_xticklabels(methods, rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(methods) - 0.4)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    n_pairs = len(report.get("pairs") or [])
    fig.suptitle(f"Fusion metrics per image ({n_pairs} pairs; bar = mean; 8-bit luminance, "
                 "MI in bits)", fontsize=11)
    fig.tight_layout()
    _atomic_png(fig, path)
    plt.close(fig)
    return True


def plot_confusion_matrix(report: Mapping, path: Path) -> bool:
    """Row-normalised confusion matrix with class names. Returns False (nothing written)
    when the report has no confusion matrix."""
    matrix = report.get("confusion_matrix")
    if not matrix:
        return False
    m = np.asarray(matrix, np.float64)
    if m.sum() == 0:
        return False
    names = list(report.get("class_names") or range(m.shape[0]))
    rows = m.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(rows > 0, 100.0 * m / rows, np.nan)
    plt = _pyplot()
    k = m.shape[0]
    size = max(5.0, 0.6 * k + 2.5)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    cmap = plt.get_cmap("Blues").with_extremes(bad="#dddddd")
    im = ax.imshow(np.ma.masked_invalid(norm), cmap=cmap, vmin=0, vmax=100)
    for i in range(k):
        for j in range(k):
            v = norm[i, j]
            if np.isfinite(v) and (v >= 0.05 or i == j):
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=7,
                        color="white" if v > 60 else "black")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    ax.set_yticklabels([f"{n}" + ("" if rows[i, 0] > 0 else " (absent)")
                        for i, n in enumerate(names)], fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("ground-truth class")
    method = report.get("segmentation_method") or "model"
    ax.set_title(f"{method}: confusion matrix, % of each ground-truth class\n"
                 f"({int(m.sum())} pixels, {report.get('n_labelled', '?')} pairs)", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="% of the row")
    fig.tight_layout()
    _atomic_png(fig, path)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------------- markdown
def _segmentation_table(report: Mapping) -> list[str]:
    per = report.get("per_class")
    if not per:
        return ["No segmentation metrics: " + (
            "no model was evaluated (fusion rule only)." if not report.get("checkpoint")
            and report.get("kind") == "evaluate" else "the data has no ground-truth labels."), ""]
    names = list(per)
    method = report.get("segmentation_method") or "model"
    lines = ["IoU per class (%), mIoU and mAcc (%); `-` = class without ground truth and "
             "prediction (undefined).", "",
             "| method | " + " | ".join(names) + " | mIoU | mAcc | pixel acc |",
             "|---|" + "---|" * (len(names) + 3)]
    lines.append(f"| {method} | " + " | ".join(_fmt(per[n]["iou"], 1) for n in names)
                 + f" | **{_fmt(report.get('mIoU'), 1)}** | {_fmt(report.get('mAcc'), 1)} | "
                 f"{_fmt(report.get('pixel_acc'), 1)} |")
    lines += ["", "Accuracy per class (%):", "",
              "| method | " + " | ".join(names) + " |", "|---|" + "---|" * len(names),
              f"| {method} | " + " | ".join(_fmt(per[n]["acc"], 1) for n in names) + " |", ""]
    absent = [n for n in names if not per[n].get("present")]
    if absent:
        lines += [f"Classes without ground-truth pixels here: {', '.join(absent)}.", ""]
    return lines


def _detection_table(report: Mapping) -> list[str]:
    """The detection section's lines (empty for a report without a detector)."""
    det = report.get("detection")
    if not det:
        return []
    names = list(det.get("classes") or det.get("per_class") or [])
    per = det.get("per_class") or {}
    lines = ["## Detection", "",
             f"Ground-truth boxes: {det.get('boxes', '?')}; {det.get('gt_boxes', 0)} boxes in "
             f"{det.get('images', 0)} images. AP (%) per class at IoU 0.5; `-` = class without "
             "ground truth.", "",
             "| method | " + " | ".join(f"AP50 {n}" for n in names)
             + " | mAP@0.5 | mAP@0.5:0.95 |", "|---|" + "---|" * (len(names) + 2),
             f"| {det.get('method') or 'model'} | "
             + " | ".join(_fmt((per.get(n) or {}).get("ap50"), 1) for n in names)
             + f" | **{_fmt(report.get('map50'), 1)}** | {_fmt(report.get('map50_95'), 1)} |",
             ""]
    if det.get("protocol"):
        lines += [f"Protocol: {det['protocol']}.", ""]
    return lines


def _fusion_table(report: Mapping) -> list[str]:
    fusion = report.get("fusion") or {}
    if not fusion:
        return ["No fusion metrics.", ""]
    counts = report.get("fusion_n") or {}
    lines = ["| method | " + " | ".join(FUSION_METRIC_KEYS) + " | pairs |",
             "|---|" + "---|" * (len(FUSION_METRIC_KEYS) + 1)]
    for m in report.get("methods") or fusion:
        if m not in fusion:
            continue
        row = fusion[m]
        lines.append(f"| {m} | " + " | ".join(_fmt(row.get(k), 3 if k in ("Qabf", "SCD", "VIF",
                                                                          "SSIM") else 2)
                                           for k in FUSION_METRIC_KEYS)
                     + f" | {max((counts.get(m) or {0: 0}).values())} |")
    lines.append("")
    if any(v is None for m in fusion for v in fusion[m].values()):
        lines += ["`-`: undefined on every pair (e.g. SCD of the visible or thermal rule: a "
                  "correlation with a constant difference image is undefined).", ""]
    return lines


def _conventions(report: Mapping) -> list[str]:
    conv = (report.get("protocol") or {}).get("fusion") or {}
    if not conv:
        return []
    lines = ["Conventions:", ""]
    for key in ("scale", "fused", "sources", "aggregation"):
        if key in conv:
            lines.append(f"- {key}: {conv[key]}")
    for key in FUSION_METRIC_KEYS:
        if key in conv:
            lines.append(f"- **{key}**: {conv[key]}")
    return lines + [""]


def _timing_lines(timing: Mapping) -> list[str]:
    rows = [(k, v) for k, v in timing.items() if isinstance(v, Mapping) and v.get("n")]
    scalars = [(k, v) for k, v in timing.items() if not isinstance(v, Mapping)]
    lines = []
    if rows:
        lines += ["| quantity (ms) | n | mean | p50 | p90 | p99 | max |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {k} | {v['n']} | {v['mean']:.1f} | {v['p50']:.1f} | {v['p90']:.1f} | "
                  f"{v['p99']:.1f} | {v['max']:.1f} |" for k, v in rows]
        lines.append("")
    lines += [f"- {k}: {_fmt(v)}" for k, v in scalars]
    return lines + ([""] if scalars else [])


def render_markdown(report: Mapping, title: str = "segmif evaluation report",
                    files: Sequence[str] = ()) -> str:
    """The report as Markdown (see the module docstring)."""
    protocol = report.get("protocol") or {}
    lines = [f"# {title}", ""]
    facts = []
    if report.get("data"):
        facts.append(f"data `{report['data']}`" + (f" (split `{report['split']}`)"
                                                    if report.get("split") else ""))
    if report.get("bag"):
        facts.append(f"bag `{report['bag']}`")
    facts.append(f"checkpoint `{report.get('checkpoint') or 'none (fusion rules only)'}`")
    if report.get("device"):
        facts.append(f"device {report['device']}")
    if report.get("input_size"):
        facts.append(f"network input {report['input_size'][1]}x{report['input_size'][0]}")
    if report.get("kind") == "bag_eval":
        facts.append(f"{report.get('n_pairs', 0)} frames answered by the node, "
                     f"{report.get('n_labelled', 0)} of them with ground truth")
    else:
        facts.append(f"{report.get('n_pairs', 0)} pairs, {report.get('n_labelled', 0)} "
                     "with labels")
    lines += ["; ".join(facts) + ".", ""]
    for w in report.get("warnings") or []:
        lines.append(f"> **Warning:** {w}")
    if report.get("warnings"):
        lines.append("")

    lines += ["## Protocol", "",
              f"- Segmentation: {protocol.get('definition', '')}; {protocol_sentence(protocol)}; "
              f"at the {protocol.get('resolution', 'native resolution')}; ground truth "
              f"{protocol.get('ignore_index', 255)} ignored. Percent (0-100).",
              "- Fusion: per pair at native resolution on 8-bit luminance (fused: BT.601 luma of "
              "the fused RGB; sources: visible luma and thermal), mean over pairs. Baseline rules "
              "(visible, thermal, average = (vis + ir + 1) // 2, maximum, laplacian = 4-level "
              "Laplacian pyramid with max-abs details and max base, gff = guided-filtering "
              "fusion of Li et al. 2013) are scored on the same sources: they show how far the "
              "model is from trivial and classical answers.", ""]

    lines += ["## Segmentation", ""] + _segmentation_table(report)
    lines += _detection_table(report)
    lines += ["## Fusion metrics (mean over pairs; MI in bits)", ""] + _fusion_table(report)
    lines += _conventions(report)
    if report.get("fusion_skipped"):
        lines += [f"{len(report['fusion_skipped'])} fusion entries skipped (first: "
                  f"{report['fusion_skipped'][0]}).", ""]
    if VIOLINS_PNG in files or CONFUSION_PNG in files:
        lines += ["## Plots", ""]
        if VIOLINS_PNG in files:
            lines += [f"![fusion metrics per image]({VIOLINS_PNG})", ""]
        if CONFUSION_PNG in files:
            lines += [f"![confusion matrix]({CONFUSION_PNG})", ""]

    stream = report.get("stream")
    if stream:
        lines += ["## Stream (node frame statistics)", "", "| quantity | value |", "|---|---|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in stream.items()
                  if not isinstance(v, (list, dict))]
        lines.append("")
    timing = report.get("timing")
    if timing:
        lines += ["## Timing", ""] + _timing_lines(timing)
    if report.get("mosaics"):
        lines += ["## Mosaics (visible | thermal | fused | colour labels | ground truth)", ""]
        lines += [f"![{m}]({m})" for m in report["mosaics"]] + [""]
    lines += ["## Published numbers (for orientation only: other data, splits, model sizes or "
              "evaluators)", ""] + [f"- {p}" for p in PUBLISHED] + [""]
    return "\n".join(lines)


# -------------------------------------------------------------------------------------- write
def write_report(report: dict, out_dir, title: str = "segmif evaluation report",
                 plots: bool = True) -> list[str]:
    """Write report.md, the plots and report.json (last) into ``out_dir``, each atomically.

    ``report["files"]`` is set to the names written. A ``confusion_matrix.png`` or
    ``fusion_violins.png`` left by an earlier run is removed when this report has no such plot.
    Returns the file names written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, fn in ((VIOLINS_PNG, plot_fusion_violins), (CONFUSION_PNG, plot_confusion_matrix)):
        if plots and fn(report, out / name):
            files.append(name)
        elif (out / name).exists():
            (out / name).unlink()
    files = [REPORT_JSON, REPORT_MD] + files
    report["files"] = files
    atomic.write_text(out / REPORT_MD, render_markdown(report, title, files))
    write_json_atomic(report, out / REPORT_JSON)
    return files
