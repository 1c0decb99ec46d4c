"""``segmif evaluate``: one checkpoint (or one fusion rule) -> a report; several checkpoints ->
a comparison table (:mod:`segmif_core.compare`).

    segmif evaluate --data DIR [--split FILE] --out DIR [--checkpoint [NAME=]PATH]
    segmif evaluate --data DIR --out DIR --checkpoint segmif.pt --checkpoint TSJ=tsjnet.pt

With one ``--checkpoint`` (or none: the shipped one) the report of ``evaluate_folder`` is
written to OUT (report.json, report.md, plots) and summarised on stdout: mIoU per class, mAP@0.5
and mAP@0.5:0.95 for a model with a detector, the fusion metrics. With two or more, every model
is evaluated on DIR; the rows (models, then the fusion rules) and columns (mIoU, mAP@0.5,
mAP@0.5:0.95, fusion metrics) go to OUT/comparison.md and comparison.json, each run's full
report to OUT/DATA/NAME/. NAME defaults to the model's row name (SegMiF, TSJNet, ...; the
checkpoint's file stem is added when two would be equal). Nothing here imports torch before a
model is loaded.
"""
from __future__ import annotations

import re
from pathlib import Path

_NAMED = re.compile(r"^([A-Za-z0-9_.+-]+)=(.+)$")


def print_fusion(report: dict) -> None:
    """One line per fusion method: its mean metrics ('-' where undefined)."""
    for method, row in report["fusion"].items():
        print(f"  {method:12s} " + "  ".join(
            f"{k} {'-' if v is None else format(v, '.3f')}" for k, v in row.items()))


def print_detection(report: dict, prefix: str = "") -> None:
    """The mAP line (and AP@0.5 per class) of a report with detections; nothing otherwise."""
    det = report.get("detection")
    if not det:
        return
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    print(f"{prefix}mAP@0.5 {fmt(report.get('map50'))}  mAP@0.5:0.95 "
          f"{fmt(report.get('map50_95'))}  ({det.get('gt_boxes', 0)} ground-truth boxes in "
          f"{det.get('images', 0)} images)")
    for name, v in (det.get("per_class") or {}).items():
        print(f"{prefix}  {name:12s} AP50 {fmt(v.get('ap50'))}  positives {v.get('positives')}")


def split_named(spec: str) -> tuple[str | None, str]:
    """'NAME=PATH' -> (NAME, PATH) unless the whole string is an existing file; 'PATH' ->
    (None, PATH)."""
    m = _NAMED.match(spec)
    if m and not Path(spec).exists():
        return m.group(1), m.group(2)
    return None, spec


def model_names(given: list, predictors: list, paths: list) -> list[str]:
    """Row names: the given ones, else the model's (SegMiF, TSJNet, ...), with the file stem
    added to names that would repeat. Raises ValueError on duplicates left."""
    from segmif_core.evaluation import model_method_name

    auto = [g or model_method_name(p.info) for g, p in zip(given, predictors)]
    names = [n if g or auto.count(n) == 1 else f"{n}-{Path(path).stem}"
             for g, n, path in zip(given, auto, paths)]
    if len(set(names)) != len(names):
        raise ValueError(f"model names repeat: {names}; name them with --checkpoint NAME=PATH")
    return names


def cmd_evaluate(args) -> int:
    from segmif_core.evaluation import MODEL_METHOD, evaluate_folder
    from segmif_core.report import protocol_sentence, write_report

    rule = {"mode": args.thermal_norm, "low": args.thermal_percentiles[0],
            "high": args.thermal_percentiles[1], "vmin": args.thermal_range[0],
            "vmax": args.thermal_range[1]}
    specs = [split_named(c) for c in (args.checkpoint or [])]

    def load(path):
        from segmif_core.inference import SegMiFPredictor
        return SegMiFPredictor(path, args.device, tuple(args.size) if args.size else None,
                               thermal_norm=rule["mode"],
                               thermal_range=(rule["vmin"], rule["vmax"]),
                               thermal_percentiles=(rule["low"], rule["high"]),
                               fusion_scale=getattr(args, "fusion_scale", None))

    protocol = {"include_background": not args.exclude_background, "absent": args.absent}
    if len(specs) > 1:
        if args.method != MODEL_METHOD:
            raise ValueError(f"--method {args.method} evaluates a fusion rule alone: one "
                             "--checkpoint at most")
        return _compare(args, specs, load, rule, protocol)
    if args.method == MODEL_METHOD:
        predictor = load(specs[0][1] if specs else None)
        rules = () if args.no_rules else None
    else:
        if specs:
            raise ValueError(f"--method {args.method} evaluates a fusion rule alone: "
                             "--checkpoint is not used")
        predictor, rules = None, (args.method,)
    kwargs = {} if rules is None else {"rules": rules}
    report = evaluate_folder(predictor, args.data, args.split, log=print, thermal_rule=rule,
                             **protocol, **kwargs)
    out = Path(args.out)
    files = write_report(report, out, title="segmif evaluate report")
    if report["mIoU"] is not None:
        print(f"mIoU {report['mIoU']:.2f}  mAcc {report['mAcc']:.2f}  over "
              f"{report['n_labelled']} labelled pairs ({protocol_sentence(report['protocol'])})")
        for name, v in report["per_class"].items():
            print(f"  {name:12s} IoU {'-' if v['iou'] is None else format(v['iou'], '.2f')}")
    else:
        print(f"no segmentation metrics ({'rule only' if predictor is None else 'no labels'})")
    print_detection(report)
    print_fusion(report)
    print(f"{report['n_pairs']} pairs -> {', '.join(str(out / f) for f in files)}")
    return 0


def _compare(args, specs, load, rule, protocol) -> int:
    from segmif_core.compare import COMPARISON_MD, compare, write_comparison
    from segmif_core.evaluation import RULE_NAMES

    predictors = [load(path) for _, path in specs]
    names = model_names([n for n, _ in specs], predictors, [p for _, p in specs])
    data_name = Path(args.data).name + (f"/{Path(args.split).stem}" if args.split else "")
    comp = compare(list(zip(names, predictors)), [(data_name, args.data, args.split)],
                   rules=() if args.no_rules else RULE_NAMES, log=print, thermal_rule=rule,
                   **protocol)
    out = Path(args.out)
    write_comparison(comp, out, title="segmif evaluate comparison")
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for r in comp["rows"]:
        print(f"  {r['method']:14s} {r['kind']:5s} mIoU {fmt(r['mIoU'])}  mAP@0.5 "
              f"{fmt(r['map50'])}  mAP@0.5:0.95 {fmt(r['map50_95'])}  EN {fmt(r['EN'])}  "
              f"Qabf {fmt(r['Qabf'])}")
    print(f"{len(names)} models on {data_name} -> {out / COMPARISON_MD}")
    return 0
