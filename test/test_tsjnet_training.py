"""TSJNet training and evaluation (issue 15 items 4 and 5): joint steps on real MFNet pairs lower
the loss, a run writes a loadable checkpoint and resumes exactly, boxes follow the augmentation
(hand-made label, known crop and flip), evaluate_folder reports mAP (a hand-computed case and a
tiny checkpoint), the predictor's boxes are in camera pixels, ONNX export refuses TSJNet.
Small: 64x64 crops, a tiny TSJNet, 2-3 pairs."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from conftest import MFNET, needs_mfnet
from segmif_core.checkpoint import load_checkpoint, save_checkpoint
from segmif_core.data.classes import MFNET_CLASSES
from segmif_core.data.pairs import augment_pair
from segmif_core.models import build_model
from segmif_core.models.tsjnet import TSJNet
from segmif_core.training.trainer import Trainer, load_config, train
from segmif_core.training.tsjnet_steps import (_Plateau, detection_class_ids,
                                               targets_from_labels)

CPU_RECIPE = Path(__file__).resolve().parents[1] / "config" / "train" / "tsjnet_cpu.yaml"
PAPER_RECIPE = CPU_RECIPE.with_name("tsjnet_paper.yaml")
TINY = {"pretrained": None, "stem_channels": [8, 8, 16], "planes": 4, "reduce_channels": [8, 8, 8],
        "nat_dims": [8, 16, 32, 64], "nat_heads": [1, 1, 2, 4], "nat_head_hidden": 8,
        "det_width": 16, "det_convs": 1, "seg_width": 16, "seg_low_channels": 8}
NAMES = ["00104D", "00105D", "00106D"]  # real MFNet pairs with cars and people


def _config(tmp_path, out="run", fusion_lr=1e-3, **joint):
    (tmp_path / "train.txt").write_text("\n".join(NAMES[:2]) + "\n")
    (tmp_path / "val.txt").write_text(NAMES[2] + "\n")
    cfg = {"base": str(CPU_RECIPE), "out": str(tmp_path / out),
           "data": {"root": MFNET, "train_split": str(tmp_path / "train.txt"),
                    "val_split": str(tmp_path / "val.txt"), "size": [64, 80], "crop": [64, 64],
                    "scale_range": [0.5, 0.6]},
           "model": {"name": "tsjnet", "config": TINY},
           "train": {"batch_size": 2, "max_minutes": 0, "val_every": 100, "log_every": 1,
                     "ckpt_every": 1, "loss": {"class_weighting": "none"},
                     "fusion_warmup_iters": 0,  # the recipe's staged schedule off: joint only
                     "seg_optim": {"warmup_iters": 0}, "fusion_optim": {"lr": fusion_lr},
                     "joint": dict({"iters": 3, "task_iters": 0, "task_batch_size": None,
                                    "box_min_area": 4}, **joint)}}
    path = tmp_path / f"{out}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_config(path)


# ------------------------------------------------------------------------------ training
@pytest.mark.parametrize("heads", [{}, {"fusion_head": "pyramid", "pyramid_base": "brighter",
                                         "seg_head": "mlp"}], ids=["paper_heads", "pyramid_mlp"])
@needs_mfnet
def test_joint_steps_on_real_pairs_lower_the_loss(tmp_path, heads):
    torch.manual_seed(0)
    # lr near its peak (iters 100), a fast fusion rate: the sigmoid output starts near 0.5
    cfg = _config(tmp_path, fusion_lr=1e-2, iters=100)
    cfg["model"]["config"].update(heads)
    tr = Trainer(cfg, log=lambda *_: None)
    assert tr.model.config.fusion_head == heads.get("fusion_head", "decoder")
    assert tr.joint and tr.total_steps == 100 and tr.phase_of(0) == (0, "joint")
    batch = next(iter(torch.utils.data.DataLoader(tr.train_set, batch_size=2)))
    targets = targets_from_labels(batch["label"], tr.box_class_ids, 4)
    assert sum(len(t["boxes"]) for t in targets) > 0  # the crops hold cars / people
    det_before = {k: v.clone() for k, v in tr.model.detector.state_dict().items()}
    totals = []
    for _ in range(8):
        tr.set_learning_rates(0.0)
        row = tr.train_step(batch, "joint")
        tr.state["joint_steps"] += 1
        totals.append(row["total"])
    assert {"mff", "recon", "attention", "seg", "det", "det_cls"} <= set(row)
    assert totals[-1] < 0.9 * totals[0], totals
    # the paper's joint optimisation: the detector is updated too (the authors' code freezes it)
    assert not all(torch.equal(v, tr.model.detector.state_dict()[k])
                   for k, v in det_before.items())


@needs_mfnet
def test_run_writes_a_loadable_checkpoint_and_resumes_exactly(tmp_path, monkeypatch):
    full = train(_config(tmp_path, out="full", iters=3), log=lambda *_: None)
    run = tmp_path / "full"
    assert full["steps"] == 3 and full["joint_steps"] == 3
    header = (run / "log.csv").read_text().splitlines()[0].split(",")
    assert {"det", "mff", "val_mIoU", "val_mAP50", "lr_det"} <= set(header)
    assert "detection" in full["best"] and 0 <= full["best"]["detection"]["map50"] <= 100
    for name in ("joint_losses", "val_map"):
        assert (run / "plots" / f"{name}.png").stat().st_size > 1000
    model, classes, info = load_checkpoint(run / "best.pt")
    assert isinstance(model, TSJNet) and classes == MFNET_CLASSES and info["input_size"] == [64, 80]
    assert "opt_det" in torch.load(run / "last.pt", weights_only=False)["joint"]

    class Interrupted(Trainer):
        def train_step(self, batch, phase):
            row = super().train_step(batch, phase)
            if self.state["step"] == 0:  # stop after the 1st step
                self._stop_requested = True
            return row

    import segmif_core.training.trainer as trainer_mod
    import segmif_core.training.validation as validation_mod
    for mod in (trainer_mod, validation_mod):  # the plots were checked above; they cost seconds
        monkeypatch.setattr(mod, "write_plots", lambda *a: None)
    part = _config(tmp_path, out="part", iters=3)
    Interrupted(part, log=lambda *_: None).run()
    train(part, log=lambda *_: None)  # resume: true
    a = torch.load(run / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=False)
    assert b["state"]["joint_steps"] == 3
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k


@needs_mfnet
def test_task_stage_trains_the_task_networks_on_cached_fused_images(tmp_path, monkeypatch):
    import segmif_core.training.trainer as trainer_mod
    import segmif_core.training.validation as validation_mod
    for mod in (trainer_mod, validation_mod):  # plots cost seconds and are tested above
        monkeypatch.setattr(mod, "write_plots", lambda *a: None)
    cfg = _config(tmp_path, out="staged", iters=1, task_iters=2, task_batch_size=1)
    cfg["train"]["fusion_warmup_iters"] = 1
    tr = Trainer(cfg, log=lambda *_: None)
    assert [tr.phase_of(s)[1] for s in range(4)] == ["warmup", "task", "task", "joint"]
    assert tr.total_steps == 4
    seen, warmed = [], []

    class Spy(Trainer):
        def train_step(self, batch, phase):
            fusion = {k: v.clone() for k, v in self.model.fusion.state_dict().items()}
            seg = {k: v.clone() for k, v in self.model.segmenter.state_dict().items()}
            row = super().train_step(batch, phase)
            same = lambda mod, before: all(torch.equal(v, mod.state_dict()[k])  # noqa: E731
                                           for k, v in before.items())
            seen.append((phase, "ir" in batch, same(self.model.fusion, fusion),
                         same(self.model.segmenter, seg), len(batch["vis"])))
            if phase == "warmup":
                warmed.append({k: v.clone() for k, v in self.model.fusion.state_dict().items()})
            return row

    summary = Spy(cfg, log=lambda *_: None).run()
    assert summary["task_steps"] == 2 and summary["joint_steps"] == 1
    # warm-up: fusion only; task: no pair loaded (cached fused image), fusion untouched,
    # segmenter updated; joint: everything
    # segmenter updated; joint: everything. Task steps take task_batch_size pairs (1), the
    # others batch_size (2)
    assert seen == [("warmup", True, False, True, 2), ("task", False, True, False, 1),
                    ("task", False, True, False, 1), ("joint", True, False, False, 2)]
    saved = torch.load(tmp_path / "staged" / "fused_cache.pt", weights_only=False)
    assert saved["round"] == 0 and len(saved["fused"]) == 2
    # the cached image is the fused RGB image of the warmed-up fusion network (its weights after
    # step 1) on the un-augmented pair
    ref = TSJNet(tr.model.config, load_pretrained=False).eval()
    ref.fusion.load_state_dict(warmed[0])
    plain = tr.train_set.without_augmentation()
    item = plain[0]
    with torch.no_grad():
        rgb = ref.fuse(item["vis"][None], item["ir"][None])["fused_rgb"][0]
    expect = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.abs(saved["fused"][0].astype(int) - expect.astype(int)).max() <= 1
    rows = (tmp_path / "staged" / "log.csv").read_text().splitlines()
    header = rows[0].split(",")
    phase_col, lr_f, lr_s = (header.index(k) for k in ("phase", "lr_fusion", "lr_seg"))
    cells = [r.split(",") for r in rows[1:]]
    assert [c[phase_col] for c in cells] == ["warmup", "task", "task", "joint"]
    assert cells[1][lr_f] == "" and cells[0][lr_s] == ""  # each stage logs its own rates only
    assert float(cells[1][lr_s]) > 0 and float(cells[3][lr_f]) > 0


@needs_mfnet
def test_det_every_trains_the_detector_on_every_kth_task_step_only(tmp_path, monkeypatch):
    import segmif_core.training.trainer as trainer_mod
    import segmif_core.training.validation as validation_mod
    for mod in (trainer_mod, validation_mod):
        monkeypatch.setattr(mod, "write_plots", lambda *a: None)
    cfg = _config(tmp_path, out="det2", iters=0, task_iters=5, task_batch_size=1, det_every=2)
    changed = []

    class Spy(Trainer):
        def train_step(self, batch, phase):
            det = {k: v.clone() for k, v in self.model.detector.state_dict().items()}
            seg = {k: v.clone() for k, v in self.model.segmenter.state_dict().items()}
            row = super().train_step(batch, phase)
            moved = lambda mod, before: any(not torch.equal(v, mod.state_dict()[k])  # noqa: E731
                                            for k, v in before.items())
            changed.append((moved(self.model.detector, det), moved(self.model.segmenter, seg),
                            "det" in row))
            return row

    cfg["train"]["log_every"] = 2
    lines = []
    spy = Spy(cfg, log=lines.append)
    summary = spy.run()
    assert summary["task_steps"] == 5
    # the console shows the detection parts although every second step (one of each 2 printed)
    # has none (IntervalMeans)
    printed = [line for line in lines if "phase=task" in line]
    assert len(printed) >= 2 and all(" det=" in f" {line}" for line in printed)
    # task steps 0, 2, 4 train both networks; 1 and 3 the segmenter alone, without detection
    # parts in their log rows
    assert changed == [(True, True, True), (False, True, False)] * 2 + [(True, True, True)]
    with pytest.raises(ValueError, match="det_every must be an integer >= 1"):
        Trainer(_config(tmp_path, det_every=0), log=lambda *_: None)
    channels = 1 if spy.model.config.task_input == "gray" else 3
    out = spy.model.eval()(torch.rand(1, channels, 32, 32), None, phase="segment")
    assert set(out) == {"logits"} and out["logits"].shape == (1, 9, 32, 32)


def test_paper_recipe_constants():
    cfg = load_config(PAPER_RECIPE)
    j = cfg["train"]["joint"]
    assert j["epochs"] == 100 and j["lr_schedule"] == "plateau" and j["clip_grad"] == 1.0
    assert j["loss_weights"] == {"intensity": 20.0, "gradient": 20.0, "ssim": 10.0,
                                 "recon_vis": 6.0, "recon_ir": 1.0, "attention": 0.1,
                                 "segmentation": 1.0, "detection": 1.0}
    assert cfg["train"]["batch_size"] == 2 and cfg["train"]["fusion_optim"]["lr"] == 1e-4
    assert cfg["model"]["config"]["nat_depths"] == [3, 4, 6, 5]
    cpu = load_config(CPU_RECIPE)
    assert cpu["model"]["config"]["stem_channels"] == [16, 16, 32]  # not the paper's widths
    # within the 2 hours on one core of the 2-core CPU
    assert cpu["train"]["max_minutes"] <= 120 and cpu["train"]["threads"] == 1
    # the staged CPU schedule (ours): fusion warm-up, task stage on cached fused images, joint
    # steps with the task networks' BatchNorm statistics kept, best.pt on mIoU and mAP@0.5
    assert cpu["train"]["fusion_warmup_iters"] > 0 and cpu["train"]["joint"]["task_iters"] > 0
    assert cpu["train"]["joint"]["freeze_task_bn"] and cpu["train"]["joint"]["select"] == "miou_map50"
    assert PAPER_RECIPE.read_text().count("task_iters") == 0  # the paper has one joint stage


@needs_mfnet
def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match="exactly one of iters or epochs"):
        Trainer(_config(tmp_path, epochs=2), log=lambda *_: None)
    with pytest.raises(ValueError, match=r"unknown config keys \['train.joint.itres'\]"):
        Trainer(_config(tmp_path, itres=2), log=lambda *_: None)  # load_config names it
    with pytest.raises(ValueError, match="not segmentation classes"):
        detection_class_ids(("car", "truck"), MFNET_CLASSES.names)
    assert detection_class_ids(("car", "person", "bike"), MFNET_CLASSES.names) == (1, 2, 3)


def test_plateau_divides_the_rate_after_patience_epochs_without_improvement():
    p = _Plateau(0.1, 2)
    for loss in (5.0, 4.0, 4.0, 4.0, 4.0):  # epochs: best 5, 4, then 3 epochs without gain
        p.add(loss)
        p.end_epoch()
    assert p.state["scale"] == pytest.approx(0.1) and p.state["bad"] == 0


# ------------------------------------------------------------------------------ boxes
class _FixedRng:
    """Stands in for the augmentation's generator: scale, offsets and flip chosen by hand."""

    def __init__(self, scale, y0, x0, flip):
        self.uniforms = [scale, 1.0, 0.0]     # scale, brightness factor 1, log thermal gain 0
        self.ints = [y0, x0]
        self.flip = flip

    def uniform(self, lo, hi):
        return self.uniforms.pop(0)

    def integers(self, lo, hi):
        v = self.ints.pop(0)
        assert lo <= v < hi
        return v

    def random(self):
        return 0.0 if self.flip else 0.9


def _boxes_after(label, scale, y0, x0, flip, crop):
    vis = np.zeros(label.shape + (3,), np.float32)
    ir = np.zeros(label.shape, np.float32)
    _, _, lab = augment_pair(vis, ir, label, label.shape, crop, _FixedRng(scale, y0, x0, flip),
                             scale_range=(scale, scale), brightness=0.0, flip=True)
    t = targets_from_labels(torch.from_numpy(lab.astype(np.int64))[None], (1, 2, 3), 1)[0]
    return t["boxes"].tolist(), t["labels"].tolist()


def test_boxes_follow_resize_crop_and_flip():
    label = np.zeros((24, 32), np.uint8)
    label[4:8, 8:16] = 2                       # a person: columns 8..15, rows 4..7
    label[16:20, 0:4] = 1                      # a car at the left border
    # scale 2 (24x32 -> 48x64), crop 32x40 at (y0, x0) = (6, 10), no flip:
    # person x 16..32 -> 6..22, y 8..16 -> 2..10; the car (x 0..8) falls outside the crop
    boxes, labels = _boxes_after(label, 2.0, 6, 10, False, (32, 40))
    assert boxes == [[6.0, 2.0, 22.0, 10.0]] and labels == [1]
    # the same with a flip: x -> 40 - x
    boxes, labels = _boxes_after(label, 2.0, 6, 10, True, (32, 40))
    assert boxes == [[18.0, 2.0, 34.0, 10.0]] and labels == [1]
    # scale 1, crop 16x20 at (2, 12): the person is cut by the crop's left edge: its columns
    # 12..15 -> 0..3, rows 4..7 -> 2..5; the car (rows 16..19, columns 0..3) is outside
    boxes, labels = _boxes_after(label, 1.0, 2, 12, False, (16, 20))
    assert boxes == [[0.0, 2.0, 4.0, 6.0]] and labels == [1]
    # flipped: x -> 20 - x
    boxes, labels = _boxes_after(label, 1.0, 2, 12, True, (16, 20))
    assert boxes == [[16.0, 2.0, 20.0, 6.0]] and labels == [1]
    # crop at (8, 0): rows 8..23 -> the car's rows 16..19 -> 8..11, the person is above
    boxes, labels = _boxes_after(label, 1.0, 8, 0, False, (16, 20))
    assert boxes == [[0.0, 8.0, 4.0, 12.0]] and labels == [0]


def test_padded_pixels_never_form_a_box():
    label = np.full((16, 16), 1, np.uint8)     # all car: 16x16
    # crop 24x24 of a 16x16 image: padded with the ignore id 255 at the bottom / right
    boxes, labels = _boxes_after(label, 1.0, 0, 0, False, (24, 24))
    assert boxes == [[0.0, 0.0, 16.0, 16.0]] and labels == [0]


# ------------------------------------------------------------------------------ evaluation
@pytest.fixture(scope="module")
def tsj_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("tsjnet", dict(TINY))
    with torch.no_grad():  # some boxes pass the score threshold
        model.detector.head.cls_logits.bias.fill_(2.0)
    path = tmp_path_factory.mktemp("tsj") / "tsj.pt"
    save_checkpoint(path, model, MFNET_CLASSES, input_size=(64, 64))
    return path


def _write_pairs(root: Path, n=2, size=(96, 128)):
    rng = np.random.default_rng(0)
    for d in ("vis", "ir", "label"):
        (root / d).mkdir(parents=True, exist_ok=True)
    h, w = size
    for i in range(n):
        vis = cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), (w, h))
        ir = cv2.resize(rng.integers(0, 256, (12, 16), dtype=np.uint8), (w, h))
        lab = np.zeros((h, w), np.uint8)
        lab[10:40, 20:60] = 1                     # a car, 30 x 40 = 1200 px
        lab[50:90, 90 + i:100 + i] = 2            # a person, 40 x 10 = 400 px
        lab[2:6, 2:6] = 2                         # 16 px: under min_area 50, no box
        cv2.imwrite(str(root / "vis" / f"p{i}.png"), vis)
        cv2.imwrite(str(root / "ir" / f"p{i}.png"), ir)
        cv2.imwrite(str(root / "label" / f"p{i}.png"), lab)


def test_evaluate_folder_reports_map_of_a_tiny_tsjnet(tmp_path, tsj_checkpoint, tiny_checkpoint):
    from segmif_core.evaluation import evaluate_folder
    from segmif_core.inference import SegMiFPredictor
    from segmif_core.report import write_report

    _write_pairs(tmp_path / "data")
    r = evaluate_folder(SegMiFPredictor(tsj_checkpoint), str(tmp_path / "data"), rules=())
    assert r["methods"] == ["TSJNet"] and isinstance(r["mIoU"], float)
    assert isinstance(r["map50"], float) and 0 <= r["map50"] <= 100
    assert 0 <= r["map50_95"] <= r["map50"]
    det = r["detection"]
    assert det["gt_boxes"] == 4 and det["images"] == 2   # a car and a person per pair
    assert det["per_class"]["car"]["positives"] == 2 and det["per_class"]["bike"]["ap50"] is None
    write_report(r, tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## Detection" in md and "mAP@0.5" in md and "| TSJNet |" in md
    seg = evaluate_folder(SegMiFPredictor(tiny_checkpoint), str(tmp_path / "data"), rules=())
    assert seg["map50"] is None and seg["detection"] is None   # SegMiF: no detector


class _StubPredictor:
    """A predictor whose detections are given: the ground-truth car of each pair (score 0.9) and
    a false person (score 0.5) where there is none."""

    classes, detection_classes = MFNET_CLASSES, ("car", "person", "bike")
    info, checkpoint_path, input_size, device = {"model": "tsjnet"}, "stub", (96, 128), "cpu"
    thermal_norm, thermal_percentiles, thermal_range = "percentile", (1.0, 99.0), (0.0, 65535.0)

    def predict(self, vis, ir):
        from segmif_core.inference.predictor import Prediction
        h, w = ir.shape
        dets = {"boxes": np.array([[20, 10, 60, 40], [0, 0, 10, 10]], np.float32),
                "scores": np.array([0.9, 0.5], np.float32), "classes": np.array([0, 1]),
                "names": list(self.detection_classes)}
        return Prediction(vis.copy(), np.zeros((h, w), np.uint8), np.ones((h, w), np.float32),
                          1.0, 1.0, {}, dets)


def test_map_of_known_detections_against_label_and_voc_boxes(tmp_path):
    from segmif_core.evaluation import evaluate_folder

    _write_pairs(tmp_path / "data")
    r = evaluate_folder(_StubPredictor(), str(tmp_path / "data"), rules=())
    # car: 2 exact true positives -> AP 100 at every IoU; person: 2 boxes, 2 false positives ->
    # AP 0; bike: no ground truth, left out. mAP = (100 + 0) / 2
    assert r["detection"]["per_class"]["car"]["ap50_95"] == pytest.approx(100.0)
    assert r["detection"]["per_class"]["person"]["ap50"] == pytest.approx(0.0)
    assert r["map50"] == pytest.approx(50.0) and r["map50_95"] == pytest.approx(50.0)
    # VOC files with the car only: person's false positives have no ground truth -> mAP = 100
    voc = tmp_path / "voc"
    voc.mkdir()
    for i in range(2):
        (voc / f"p{i}.xml").write_text(
            "<annotation><object><name>Car</name><bndbox><xmin>20</xmin><ymin>10</ymin>"
            "<xmax>60</xmax><ymax>40</ymax></bndbox></object></annotation>")
    r = evaluate_folder(_StubPredictor(), str(tmp_path / "data"), rules=(), boxes=str(voc))
    assert r["map50"] == pytest.approx(100.0) and "VOC" in r["detection"]["boxes"]


def test_predictor_boxes_are_in_camera_pixels(tsj_checkpoint, tiny_checkpoint):
    from segmif_core.inference import SegMiFPredictor
    from segmif_core.inference.backends import resize_host

    rng = np.random.default_rng(1)
    vis = cv2.resize(rng.integers(0, 256, (8, 12, 3), dtype=np.uint8), (192, 128))
    ir = cv2.resize(rng.integers(0, 256, (8, 12), dtype=np.uint8), (192, 128))
    pred = SegMiFPredictor(tsj_checkpoint)                # network input 64x64
    p = pred.predict(vis, ir)
    d = p.detections
    assert d["names"] == ["car", "person", "bike"] and len(d["boxes"]) > 0
    # the network-size boxes, by the model itself on the same resized inputs, times 192/64 and
    # 128/64
    v = torch.from_numpy(resize_host(vis, (64, 64))).permute(2, 0, 1)[None].float() / 255
    t = torch.from_numpy(resize_host(ir.astype(np.float32) / 255, (64, 64)))[None, None]
    small = pred.model.predict(v, t)["detections"][0]
    np.testing.assert_allclose(d["boxes"], small["boxes"].numpy() * [3.0, 2.0, 3.0, 2.0],
                               atol=1e-3)
    np.testing.assert_allclose(d["scores"], small["scores"].numpy(), atol=1e-5)
    assert d["boxes"][:, 2].max() <= 192 and d["boxes"][:, 3].max() <= 128
    assert SegMiFPredictor(tiny_checkpoint).predict(vis, ir).detections is None


def _bn_stats(net):
    return [m.running_mean.clone() for m in net.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


@pytest.mark.parametrize("freeze", [False, True])
@needs_mfnet
def test_freeze_task_bn_keeps_the_task_networks_running_statistics(tmp_path, freeze):
    torch.manual_seed(0)
    tr = Trainer(_config(tmp_path, iters=5, freeze_task_bn=freeze), log=lambda *_: None)
    batch = next(iter(torch.utils.data.DataLoader(tr.train_set, batch_size=2)))
    before = _bn_stats(tr.model.detector) + _bn_stats(tr.model.segmenter)
    assert before
    tr.set_learning_rates(0.0)
    tr.train_step(batch, "joint")
    after = _bn_stats(tr.model.detector) + _bn_stats(tr.model.segmenter)
    same = all(torch.equal(a, b) for a, b in zip(before, after))
    assert same is freeze
    # the networks are back in training mode after the step
    assert tr.model.detector.training and all(
        m.training for m in tr.model.segmenter.modules())


@needs_mfnet
def test_selection_score_by_hand(tmp_path):
    from segmif_core.training.validation import selection_score
    s = {"mIoU": 30.0, "detection": {"map50": 0.2}}
    assert selection_score(s, "miou") == 30.0
    assert selection_score(s, "miou_map50") == pytest.approx(25.0)   # (30 + 20) / 2
    assert selection_score({"mIoU": 30.0, "detection": {"map50": float("nan")}},
                           "miou_map50") == pytest.approx(15.0)
    with pytest.raises(ValueError, match="selection"):
        selection_score(s, "map")
    with pytest.raises(ValueError, match="select"):
        Trainer(_config(tmp_path, iters=1, select="map"), log=lambda *_: None)
