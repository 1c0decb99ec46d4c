"""Several models side by side: one table of segmentation, detection and fusion metrics.

``compare`` runs :func:`segmif_core.evaluation.evaluate_folder` for every model on every
dataset (e.g. SegMiF and TSJNet on the MFNet val split and on the fusion pairs) and gathers one
row per (dataset, model), then one row per baseline fusion rule (scored once per dataset, with
the first model's run: the rules see the same 8-bit sources whatever the model). Columns
(:data:`COLUMNS`): ``mIoU`` (percent; None without labels), ``map50`` and ``map50_95`` (percent;
None for a model without a detector and for the rules), then the fusion metrics
``EN SD SF AG MI SCD VIF Qabf SSIM`` (means over the pairs, as in the single reports).

``write_comparison`` writes ``comparison.json`` and ``comparison.md`` (the table) into a folder,
and each run's full report (``segmif_core.report``) into ``DATASET/MODEL/``. Used by
``segmif evaluate --checkpoint A --checkpoint B`` (one dataset) and ``scripts/compare.py``
(several datasets).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from . import atomic
from .evaluation import RULE_NAMES, evaluate_folder, json_safe, write_json_atomic
from .metrics.fusion import FUSION_METRIC_KEYS

#: Columns of the comparison table, in order (report keys; fusion metrics by name).
COLUMNS = ("mIoU", "map50", "map50_95") + tuple(FUSION_METRIC_KEYS)
#: Column titles in comparison.md.
TITLES = {"mIoU": "mIoU", "map50": "mAP@0.5", "map50_95": "mAP@0.5:0.95"}
COMPARISON_JSON, COMPARISON_MD = "comparison.json", "comparison.md"


def report_rows(dataset: str, model: str, report: Mapping, rules: bool = True) -> list[dict]:
    """The table rows of one ``evaluate_folder`` report: the model's (named ``model``; the
    report's first fusion method is its fused image) and, with ``rules``, one per fusion rule
    of the report (kind 'rule', no mIoU / mAP). Each row: 'data', 'method', 'kind' ('model' or
    'rule') and the :data:`COLUMNS` (None where undefined)."""
    methods = list(report.get("methods") or [])
    fusion = report.get("fusion") or {}
    own = report.get("segmentation_method") or (methods[0] if report.get("checkpoint")
                                                 and methods else None)
    rows = []
    if report.get("checkpoint"):
        fused = fusion.get(own) or (fusion.get(methods[0]) if methods else None) or {}
        rows.append({"data": dataset, "method": model, "kind": "model",
                     "mIoU": report.get("mIoU"), "map50": report.get("map50"),
                     "map50_95": report.get("map50_95"),
                     **{k: fused.get(k) for k in FUSION_METRIC_KEYS}})
    if rules:
        for m in methods:
            if m == own and report.get("checkpoint"):
                continue
            rows.append({"data": dataset, "method": m, "kind": "rule", "mIoU": None,
                         "map50": None, "map50_95": None,
                         **{k: (fusion.get(m) or {}).get(k) for k in FUSION_METRIC_KEYS}})
    return rows


def compare(models: Sequence[tuple[str, object]], datasets: Sequence[tuple[str, str, str | None]],
            rules: Iterable[str] | None = RULE_NAMES, log: Callable[[str], None] | None = None,
            **evaluate_kwargs) -> dict:
    """Evaluate every model on every dataset.

    Args:
        models: (name, predictor) pairs, names unique (row labels; a ``SegMiFPredictor`` or
            anything ``evaluate_folder`` takes).
        datasets: (name, root, split or None) triples.
        rules: fusion rules scored once per dataset (with the first model); None or () = none.
        log: progress lines; evaluate_kwargs: passed to ``evaluate_folder`` (protocol, boxes).
    Returns:
        {'kind': 'compare', 'columns', 'datasets': [{'name', 'data', 'split'}], 'models':
        [{'name', 'checkpoint'}], 'rows': [...] (see :func:`report_rows`), 'reports':
        {dataset: {model: report dict}}}.
    Raises:
        ValueError: no model, duplicate model or dataset names; what ``evaluate_folder`` raises.
    """
    names = [n for n, _ in models]
    if not models or len(set(names)) != len(names):
        raise ValueError(f"compare needs models with unique names, got {names}")
    if len({d[0] for d in datasets}) != len(datasets) or not datasets:
        raise ValueError(f"compare needs datasets with unique names, got {[d[0] for d in datasets]}")
    rules = tuple(rules or ())
    out = {"kind": "compare", "columns": list(COLUMNS),
           "datasets": [{"name": n, "data": str(r), "split": None if s is None else str(s)}
                        for n, r, s in datasets],
           "models": [{"name": n, "checkpoint": str(getattr(p, "checkpoint_path", ""))}
                      for n, p in models],
           "rows": [], "reports": {}}
    for ds, root, split in datasets:
        out["reports"][ds] = {}
        model_rows, rule_rows = [], []
        for k, (name, predictor) in enumerate(models):
            if log:
                log(f"[compare] {name} on {ds}")
            report = evaluate_folder(predictor, root, split, log=log,
                                     rules=rules if k == 0 else (), **evaluate_kwargs)
            out["reports"][ds][name] = report
            rows = report_rows(ds, name, report, rules=k == 0)
            model_rows += [r for r in rows if r["kind"] == "model"]
            rule_rows += [r for r in rows if r["kind"] == "rule"]
        out["rows"] += model_rows + rule_rows
    return out


def _fmt(value, key: str) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if key in ("Qabf", "SCD", "VIF", "SSIM") else \
        f"{value:.1f}" if key in TITLES else f"{value:.2f}"


def render_comparison_markdown(comp: Mapping, title: str = "segmif comparison") -> str:
    """comparison.md: the datasets, then one table, rows = (dataset, model or rule), columns
    :data:`COLUMNS` (`-` = undefined: no labels, no detector, or a fusion rule)."""
    lines = [f"# {title}", ""]
    for d in comp["datasets"]:
        lines.append(f"- **{d['name']}**: `{d['data']}`" + (f", split `{d['split']}`"
                                                           if d.get("split") else ""))
    for m in comp.get("models", []):
        lines.append(f"- model **{m['name']}**: checkpoint `{m['checkpoint']}`")
    cols = comp.get("columns") or list(COLUMNS)
    lines += ["", "mIoU, mAP (%) and fusion metrics (mean over pairs, MI in bits); mAP against "
              "boxes derived from the label images (see the per-run reports); `-` = undefined "
              "(no labels, no detector, or a fusion rule).", "",
              "| data | method | " + " | ".join(TITLES.get(c, c) for c in cols) + " |",
              "|---|---|" + "---|" * len(cols)]
    for r in comp["rows"]:
        name = r["method"] if r["kind"] == "model" else f"{r['method']} (rule)"
        lines.append(f"| {r['data']} | {name} | "
                     + " | ".join(_fmt(r.get(c), c) for c in cols) + " |")
    return "\n".join(lines + [""])


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)) or "_"


def write_comparison(comp: dict, out_dir, title: str = "segmif comparison") -> list[str]:
    """Write ``OUT/DATASET/MODEL/report.*`` (each run's report), then ``comparison.md`` and
    ``comparison.json`` (without the full reports: their folders under 'report_dirs').
    Returns the paths written relative to ``out_dir``."""
    from .report import write_report

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written, dirs = [], {}
    for ds, reports in comp.get("reports", {}).items():
        for name, report in reports.items():
            rel = Path(_safe(ds)) / _safe(name)
            write_report(report, out / rel, title=f"{name} on {ds}")
            dirs.setdefault(ds, {})[name] = str(rel)
            written.append(str(rel / "report.md"))
    summary = {k: v for k, v in comp.items() if k != "reports"}
    summary["report_dirs"] = dirs
    md = render_comparison_markdown(summary, title)
    atomic.write_text(out / COMPARISON_MD, md)
    write_json_atomic(json_safe(summary), out / COMPARISON_JSON)
    return written + [COMPARISON_MD, COMPARISON_JSON]
