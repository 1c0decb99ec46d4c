"""Training: steps lower the loss, the schedule, Eq. (8)-(9) weights, exact resume, data checks."""
import json
import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from segmif_core.checkpoint import load_checkpoint
from segmif_core.data.pairs import DatasetError
from segmif_core.models import build_model
from segmif_core.models.preprocessing import merge_luminance, split_luminance
from segmif_core.training.logs import IntervalMeans
from segmif_core.training.losses import fusion_loss, segmentation_loss
from segmif_core.training.config import parse_overrides
from segmif_core.training.trainer import StepBatches, Trainer, evaluate, load_config, train
from segmif_core.training.weighting import DynamicWeights, StaticWeights

PAPER = Path(__file__).resolve().parents[1] / "config" / "train" / "paper.yaml"
TINY = {"encoder": "mit-b0", "decoder_hidden_size": 32, "fusion_width": 8, "drdb_growth": 4,
        "drdb_layers": 5, "drdbs_per_group": 1, "hia_heads": 2, "interaction": "full",
        "hia_stride": 1, "pretrained": None}


def test_joint_steps_lower_the_loss():
    torch.manual_seed(0)
    model = build_model("segmif", dict(TINY, num_classes=3))
    vis, ir = torch.rand(2, 3, 64, 64), torch.rand(2, 1, 64, 64)
    label = (ir[:, 0] * 3).long().clamp(max=2)  # classes readable from the thermal image
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    losses = []
    for _ in range(10):
        out = model(vis, ir)
        total = fusion_loss(out["fused"], split_luminance(vis)[0], ir)["total"] + \
            segmentation_loss(out["logits"], label)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(total.item())
    assert losses[-1] < 0.9 * losses[0], losses


def test_console_line_averages_loss_parts_over_the_interval():
    means = IntervalMeans()
    assert means.line() == ""
    means.add({"seg": 1.0, "det": 4.0, "det_pos": 3, "total": 5.0, "step": 1, "phase": "task",
               "lr_seg": 1e-3, "lr_fusion": None})
    means.add({"seg": 2.0, "total": 2.0, "step": 2, "phase": "task", "lr_seg": 5e-4,
               "val_mIoU": 40.0})
    line = dict(kv.split("=") for kv in means.line().split())
    # by hand: seg (1 + 2) / 2, det only on step 1 (4), total (5 + 2) / 2; step, phase, the
    # learning rate and validation the latest; None left out
    assert line == {"seg": "1.5", "det": "4", "det_pos": "3", "total": "3.5", "step": "2",
                    "phase": "task", "lr_seg": "0.0005", "val_mIoU": "40"}
    assert means.line() == ""  # reset after each line


def test_dynamic_weights_follow_eq_9():
    w = DynamicWeights({"fusion": 0.4, "seg": 0.8}, temperature=2.0, window=2)
    assert w.current() == pytest.approx({"fusion": 0.2, "seg": 0.4})  # r = 1 before 2 windows
    for f, s in [(1.0, 2.0), (3.0, 2.0), (1.0, 1.0), (1.0, 1.0)]:  # windows: (2, 2), (1, 1)
        w.update({"fusion": f, "seg": s})
    # r_f = 1/2, r_s = 1/2 -> equal exponents -> eta_i / 2
    assert w.current() == pytest.approx({"fusion": 0.2, "seg": 0.4})
    w.update({"fusion": 4.0, "seg": 1.0})
    w.update({"fusion": 4.0, "seg": 1.0})  # window (4, 1): r_f = 4, r_s = 1
    e_f, e_s = math.exp(4 / 2), math.exp(1 / 2)
    assert w.current() == pytest.approx({"fusion": 0.4 * e_f / (e_f + e_s),
                                         "seg": 0.8 * e_s / (e_f + e_s)})
    restored = DynamicWeights({"fusion": 0.4, "seg": 0.8}, 2.0, 2)
    restored.load_state_dict(w.state_dict())
    assert restored.current() == w.current()
    assert StaticWeights({"fusion": 1.0, "seg": 0.5}).current() == {"fusion": 1.0, "seg": 0.5}
    with pytest.raises(ValueError):
        DynamicWeights({"fusion": 0.4, "seg": 0.8}, temperature=0.0)


def test_step_batches_cover_each_epoch_once_and_split_ranks():
    plan = StepBatches(10, 2, seed=3)
    epoch = [i for step in range(5) for i, _ in plan.indices(step)]
    assert sorted(epoch) == list(range(10))
    ranks = [StepBatches(10, 2, seed=3, rank=r, world=2).indices(0) for r in range(2)]
    assert not {i for i, _ in ranks[0]} & {i for i, _ in ranks[1]}
    assert plan.indices(7) == StepBatches(10, 2, seed=3, start=7).indices(7)
    with pytest.raises(ValueError, match="fewer"):
        StepBatches(3, 2, seed=0, world=2)


def _dataset(root: Path, names, size=(48, 64), bad=None):
    rng = np.random.default_rng(0)
    for sub in ("vis", "ir", "label"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for n in names:
        h, w = size
        cv2.imwrite(str(root / "vis" / f"{n}.png"), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        ir_h = h + 2 if n == bad else h
        cv2.imwrite(str(root / "ir" / f"{n}.png"), rng.integers(0, 256, (ir_h, w), dtype=np.uint8))
        cv2.imwrite(str(root / "label" / f"{n}.png"), rng.integers(0, 9, (h, w), dtype=np.uint8))
    (root / "train.txt").write_text("\n".join(names[:-1]) + "\n")
    (root / "val.txt").write_text(names[-1] + "\n")


def _stopping_after(step: int):
    """A Trainer that raises its stop request in the optimiser step taken when ``state['step']``
    is ``step`` (the count goes up after ``train_step``), so the loop stops after step
    ``step + 1`` as on SIGINT/SIGTERM."""
    class Interrupted(Trainer):
        def train_step(self, batch, phase):
            row = super().train_step(batch, phase)
            if self.state["step"] == step:
                self._stop_requested = True
            return row
    return Interrupted


def _config(tmp_path, root, out="run", **train):
    cfg = {"base": str(PAPER), "out": str(tmp_path / out),
           "data": {"root": str(root), "size": [48, 64], "crop": [32, 32]},
           "model": {"name": "segmif", "config": TINY},
           "train": dict({"device": "cpu", "batch_size": 2, "workers": 0, "rounds": 2,
                          "seg_iters": 1, "fusion_iters": 2, "val_every": 3, "log_every": 1,
                          "ckpt_every": 1, "progress": False, "fusion_warmup_iters": 0,
                          "seg_optim": {"warmup_iters": 1}}, **train)}
    path = tmp_path / f"{out}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return load_config(path)


def test_schedule_alternates_rounds(tmp_path):
    root = tmp_path / "data"
    _dataset(root, ["a", "b", "c"])
    tr = Trainer(_config(tmp_path, root, seg_iters=2, fusion_iters=3), log=lambda *_: None)
    phases = [tr.phase_of(s) for s in range(10)]
    assert phases == [(0, "seg")] * 2 + [(0, "fusion")] * 3 + [(1, "seg")] * 2 + \
        [(1, "fusion")] * 3


def test_fusion_warmup_comes_first_and_trains_phi_only(tmp_path):
    root = tmp_path / "data"
    _dataset(root, ["a", "b", "c"])
    tr = Trainer(_config(tmp_path, root, out="warm", rounds=1, seg_iters=1, fusion_iters=1,
                         fusion_warmup_iters=2), log=lambda *_: None)
    assert [tr.phase_of(s)[1] for s in range(4)] == ["warmup", "warmup", "seg", "fusion"]
    seg_before = {k: v.clone() for k, v in tr.model.segmenter.state_dict().items()}
    fus_before = {k: v.clone() for k, v in tr.model.fusion.state_dict().items()}
    batch = next(iter(torch.utils.data.DataLoader(tr.train_set, batch_size=2)))
    row = tr.train_step(batch, "warmup")
    assert "seg" not in row and row["fusion"] > 0
    assert all(torch.equal(v, tr.model.segmenter.state_dict()[k]) for k, v in seg_before.items())
    assert not all(torch.equal(v, tr.model.fusion.state_dict()[k])
                   for k, v in fus_before.items())


def test_train_loop_writes_checkpoint_log_plots_and_summary(tmp_path):
    root = tmp_path / "data"
    _dataset(root, ["a", "b", "c", "d"])
    summary = train(_config(tmp_path, root), log=lambda *_: None)
    run = tmp_path / "run"
    assert summary["steps"] == 6 and summary["seg_steps"] == 2 and summary["fusion_steps"] == 4
    assert 0 <= summary["best"]["mIoU"] <= 100
    assert json.loads((run / "summary.json").read_text())["steps"] == 6
    rows = (run / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 7 and "lambda_fusion" in rows[0]
    fusion_row = dict(zip(rows[0].split(","), rows[2].split(",")))
    assert fusion_row["phase"] == "fusion"
    # dynamic weighting with the paper's T = 1000 and eta 0.4 / 0.8: lambda = eta / 2 at first
    assert float(fusion_row["lambda_fusion"]) == pytest.approx(0.2)
    assert float(fusion_row["lambda_seg"]) == pytest.approx(0.4)
    val_row = dict(zip(rows[0].split(","), rows[3].split(",")))  # step 3: val_every 3
    assert float(val_row["val_mIoU"]) >= 0
    assert 0 <= float(val_row["val_Qabf"]) <= 1 and float(val_row["val_SF"]) >= 0
    assert set(summary["best"]["fusion"]) == {"Qabf", "SF"}
    for name in ("losses", "lambdas", "val_miou", "val_qabf", "val_sf"):
        assert (run / "plots" / f"{name}.png").stat().st_size > 1000
    model, classes, info = load_checkpoint(run / "best.pt")
    assert classes.names[1] == "car" and info["input_size"] == [48, 64]


def test_fusion_phase_leaves_the_segmenter_unchanged(tmp_path):
    root = tmp_path / "data"
    _dataset(root, ["a", "b", "c"])
    tr = Trainer(_config(tmp_path, root, seg_iters=0, fusion_iters=2, rounds=1),
                 log=lambda *_: None)
    seg_before = {k: v.clone() for k, v in tr.model.segmenter.state_dict().items()}
    fus_before = {k: v.clone() for k, v in tr.model.fusion.state_dict().items()}
    tr.run()
    assert all(torch.equal(v, tr.model.segmenter.state_dict()[k]) for k, v in seg_before.items())
    assert not all(torch.equal(v, tr.model.fusion.state_dict()[k])
                   for k, v in fus_before.items())


def test_resume_after_interrupt_matches_uninterrupted_run(tmp_path):
    root = tmp_path / "data"
    _dataset(root, ["a", "b", "c", "d", "e"])
    full = _config(tmp_path, root, out="full")
    train(full, log=lambda *_: None)

    Interrupted = _stopping_after(3)  # the 4th step: the stop lands after it

    part = _config(tmp_path, root, out="part")
    Interrupted(part, log=lambda *_: None).run()
    assert torch.load(tmp_path / "part" / "last.pt", weights_only=False)["state"]["step"] == 4
    # a hard kill after logging steps 5 and 6 but before saving: the resume must not log them twice
    full_rows = (tmp_path / "full" / "log.csv").read_text().strip().splitlines()
    with open(tmp_path / "part" / "log.csv", "a") as f:
        f.write("\n".join(full_rows[5:7]) + "\n")
    train(part, log=lambda *_: None)  # resume: true in paper.yaml
    part_rows = (tmp_path / "part" / "log.csv").read_text().strip().splitlines()
    assert [r.split(",")[0] for r in part_rows] == ["step", "1", "2", "3", "4", "5", "6"]
    a = torch.load(tmp_path / "full" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=False)
    assert b["state"]["step"] == 6
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert a["weighting"] == b["weighting"]


def test_a_stop_signal_saves_last_before_the_validation_it_triggers(tmp_path):
    root = tmp_path / "data"
    _dataset(root, ["a", "b", "c", "d"])
    seen = {}

    class KilledInValidation(Trainer):
        def train_step(self, batch, phase):
            row = super().train_step(batch, phase)
            if self.state["step"] == 3:  # stop after step 4, not a validation step (val_every 3):
                self._stop_requested = True  # the stop causes one
            return row

        def validate(self, val_loader, step):
            if self._stop_requested:  # what a kill during this validation would leave behind
                seen["last_step"] = torch.load(self.out / "last.pt",
                                               weights_only=False)["state"]["step"]
            return super().validate(val_loader, step)

    cfg = _config(tmp_path, root, out="stop")
    KilledInValidation(cfg, log=lambda *_: None).run()
    assert seen["last_step"] == 4


def test_resume_keeps_the_score_of_a_best_checkpoint_that_last_pt_missed(tmp_path):
    root = tmp_path / "data"
    _dataset(root, ["a", "b", "c", "d"])
    cfg = _config(tmp_path, root, out="run")
    trainer = Trainer(cfg, log=lambda *_: None)
    run_id = trainer.state["run_id"]
    trainer.save_last()  # step 0, best -1
    classes = trainer.classes
    from segmif_core.checkpoint import save_checkpoint
    val = {"mIoU": 42.0, "mAcc": 50.0, "step": 0, "per_class": {}}
    save_checkpoint(tmp_path / "run" / "best.pt", trainer.model, classes, (48, 64),
                    meta={"val": val, "run_id": run_id})  # written by a validation, then killed
    assert Trainer(cfg, log=lambda *_: None).state["best"] == val
    save_checkpoint(tmp_path / "run" / "best.pt", trainer.model, classes, (48, 64),
                    meta={"val": val, "run_id": "another run"})  # left by an earlier run
    assert Trainer(cfg, log=lambda *_: None).state["best"]["mIoU"] == -1.0
    last = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    del last["state"]["run_id"]  # a last.pt written before run ids
    torch.save(last, tmp_path / "run" / "last.pt")
    resumed = Trainer(cfg, log=lambda *_: None)
    assert resumed.state["best"]["mIoU"] == -1.0 and resumed.state["run_id"]


class _FixedFusion(torch.nn.Module):
    """A stand-in model whose fused luminance is a given function of (visible Y, thermal)."""

    def __init__(self, rule):
        super().__init__()
        self.fusion = torch.nn.Identity()  # evaluate() reports fusion quality for models with one
        self.rule = rule

    def predict(self, vis, ir):
        y, cbcr = split_luminance(vis)
        u = self.rule(y, ir)
        labels = torch.zeros(vis.shape[0], *vis.shape[-2:], dtype=torch.int64)
        return {"labels": labels, "fused_rgb": merge_luminance(u, cbcr)}


def test_validation_reports_fusion_quality_and_ranks_a_blurred_fusion_lower():
    rng = np.random.default_rng(1)
    # smooth shapes with edges in both sources: a square in the visible, a disc in the thermal
    vis = np.zeros((64, 80, 3), np.uint8)
    vis[16:48, 10:40] = 200
    ir = np.zeros((64, 80), np.uint8)
    cv2.circle(ir, (55, 32), 14, 230, -1)
    vis = np.clip(vis + rng.integers(0, 20, vis.shape), 0, 255).astype(np.uint8)
    batch = {"vis": torch.from_numpy(vis).permute(2, 0, 1)[None].float() / 255,
             "ir": torch.from_numpy(ir)[None, None].float() / 255,
             "label": torch.zeros(1, 64, 80, dtype=torch.int64)}
    average = _FixedFusion(lambda y, t: (y + t) / 2)
    blurred = _FixedFusion(lambda y, t: torch.from_numpy(cv2.GaussianBlur(
        ((y + t) / 2)[0, 0].numpy(), (0, 0), 3.0))[None, None])
    sharp = evaluate(average, [batch], 9, "cpu")["fusion"]
    blur = evaluate(blurred, [batch], 9, "cpu")["fusion"]
    assert 0 < blur["Qabf"] < sharp["Qabf"] <= 1
    assert 0 < blur["SF"] < sharp["SF"]
    # the average's SF, computed here from the 8-bit average luminance directly
    y8 = cv2.cvtColor(vis, cv2.COLOR_RGB2YCrCb)[..., 0].astype(np.float64)
    avg = np.round((y8 + ir) / 2)
    rf, cf = np.diff(avg, axis=1), np.diff(avg, axis=0)
    assert sharp["SF"] == pytest.approx(np.sqrt((rf ** 2).mean() + (cf ** 2).mean()), rel=0.05)


def test_resume_continues_a_log_written_without_the_fusion_quality_columns(tmp_path):
    import csv
    root = tmp_path / "data"
    _dataset(root, ["a", "b", "c", "d"])

    Interrupted = _stopping_after(2)

    cfg = _config(tmp_path, root, out="old")
    Interrupted(cfg, log=lambda *_: None).run()
    log = tmp_path / "old" / "log.csv"
    with open(log, newline="") as f:  # the log of a version before val_Qabf / val_SF
        rows = list(csv.DictReader(f))
    old_fields = [k for k in rows[0] if k not in ("val_Qabf", "val_SF")]
    with open(log, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=old_fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    train(cfg, log=lambda *_: None)
    with open(log, newline="") as f:
        lines = list(csv.reader(f))
    assert lines[0] == old_fields and [r[0] for r in lines[1:]] == ["1", "2", "3", "4", "5", "6"]
    assert all(len(r) == len(old_fields) for r in lines)


def test_baseline_trains_segmentation_only(tmp_path):
    root = tmp_path / "data"
    _dataset(root, ["a", "b", "c"])
    cfg = _config(tmp_path, root, out="base")
    cfg["model"] = {"name": "baseline", "config": {"inputs": "early", "decoder_hidden_size": 32}}
    summary = train(cfg, log=lambda *_: None)
    assert summary["steps"] == 6 and summary["seg_steps"] == 6
    assert "fusion" not in summary["best"]  # no fused image to rate


def test_bad_data_is_reported_before_training(tmp_path):
    root = tmp_path / "data"
    _dataset(root, ["a", "b", "c"], bad="b")
    (root / "ir" / "c.png").unlink()
    with pytest.raises(DatasetError) as err:
        train(_config(tmp_path, root), log=lambda *_: None)
    assert "b" in str(err.value) and "c" in str(err.value)
    assert not (tmp_path / "run" / "log.csv").exists()


def test_config_errors(tmp_path):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"base": str(PAPER), "trian": {}}))
    with pytest.raises(ValueError, match="trian"):
        load_config(path)
    path.write_text(yaml.safe_dump({"seed": 0, "out": "x", "data": {"root": "x"}}))
    with pytest.raises(ValueError, match="missing config keys"):
        load_config(path)
    path.write_text(yaml.safe_dump({"base": str(PAPER), "train": {"final_seg_iter": 5}}))
    with pytest.raises(ValueError, match=r"unknown config keys \['train.final_seg_iter'\]"):
        load_config(path)
    path.write_text(yaml.safe_dump({"base": str(PAPER), "model": {"name": "segmiff"}}))
    with pytest.raises(ValueError, match=r"unknown model.name 'segmiff'; choose one of .*'segmif'"):
        load_config(path)
    path.write_text(yaml.safe_dump({"base": str(PAPER), "train": {"final_seg_iters": 5},
                                    "data": {"fusion_crop": [8, 8]}}))
    assert load_config(path)["train"]["final_seg_iters"] == 5


@pytest.mark.parametrize("override, section, known", [
    ("train.seg_optim.weight_decy=0.1", "train.seg_optim", "weight_decay"),
    ("train.fusion_optim.head_lr_mult=2", "train.fusion_optim", "poly_power"),
    ("train.loss.etta=1", "train.loss", "class_weighting"),
    ("train.weighting.temprature=5", "train.weighting", "lambda_seg"),
    ("data.thermal.hgih=90", "data.thermal", "high"),
    ("train.init.checkpont=x.pt", "train.init", "parts"),
    ("train.joint.itres=3", "train.joint", "plateau_patience"),
    ("train.joint.det_optim.lrr=1", "train.joint.det_optim", "head_lr_mult"),
    ("train.joint.loss_weights.ssmi=1", "train.joint.loss_weights", "recon_vis"),
    ("model.config.encodr=mit-b0", "model.config", "hia_stride"),
    ("model.config.num_classes=3", "model.config", "fusion_scale"),
])
def test_unknown_nested_config_keys_are_named(tmp_path, override, section, known):
    """A misspelt key inside a section's mappings (README: an error that lists the known ones),
    from --set as from a YAML file."""
    key = override.partition("=")[0]
    with pytest.raises(ValueError) as err:
        load_config(PAPER, parse_overrides([override]))
    msg = str(err.value)
    assert f"unknown config keys ['{key}']" in msg
    assert f"known keys of {section}: " in msg and known in msg.split(f"{section}: ")[-1]
    path = tmp_path / "cfg.yaml"
    nested = yaml.safe_load(override.partition("=")[2])
    for part in reversed(key.split(".")):
        nested = {part: nested}
    path.write_text(yaml.safe_dump({"base": str(PAPER), **nested}))
    with pytest.raises(ValueError, match=re.escape(f"['{key}']")):
        load_config(path)


def test_nested_config_keys_accepted_and_close_matches_named():
    with pytest.raises(ValueError, match=re.escape("train.seg_optim.weight_decay?")):
        load_config(PAPER, parse_overrides(["train.seg_optim.weight_decy=0.1"]))  # closest key
    cfg = load_config(PAPER, parse_overrides(["train.seg_optim.weight_decay=0.1",
                                              "train.init.checkpoint=x.pt",
                                              "train.joint.loss_weights.ssim=2",
                                              "model.config.encoder=mit-b0"]))
    assert cfg["train"]["seg_optim"]["weight_decay"] == 0.1
    assert cfg["model"]["config"]["encoder"] == "mit-b0"
    with pytest.raises(ValueError, match="train.seg_optim must be a mapping"):
        load_config(PAPER, parse_overrides(["train.seg_optim=3"]))
    for recipe in sorted(PAPER.parent.rglob("*.yaml")):  # every shipped recipe passes
        load_config(recipe)


def test_two_process_ddp_on_cpu(tmp_path):
    """torchrun with 2 CPU processes (gloo on 127.0.0.1): the same config trains with DDP."""
    import os
    import subprocess
    import sys

    root = tmp_path / "data"
    _dataset(root, ["a", "b", "c", "d", "e"])
    # fusion warm-up (Phi's outputs only), a cached segmentation step and a joint fusion step
    cfg = _config(tmp_path, root, out="ddp", batch_size=1, rounds=1, seg_iters=1,
                  fusion_iters=1, val_every=2, fusion_warmup_iters=2, fused_cache=True)
    path = tmp_path / "ddp_full.yaml"
    path.write_text(yaml.safe_dump(cfg))
    # loopback only: rendezvous on 127.0.0.1 and gloo bound to the lo interface
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", GLOO_SOCKET_IFNAME="lo", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(29500 + os.getpid() % 1000),
         "-m", "segmif_core.training.trainer", "--config", str(path)],
        cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True,
        timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 4
    assert summary["seg_steps"] == 1 and summary["fusion_steps"] == 3
    assert (tmp_path / "ddp" / "best.pt").is_file()
    rows = (tmp_path / "ddp" / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and len(rows) == 5  # header + 4 steps, written once


def test_fused_cache_batches_are_phi_outputs_and_resume_exactly(tmp_path):
    root = tmp_path / "data"
    _dataset(root, ["a", "b", "c", "d", "e"])
    # no augmentation: a cached segmentation batch must be Phi's fused RGB of the plan's pairs
    cfg = _config(tmp_path, root, out="cache", fused_cache=True)
    cfg["data"].update(crop=[48, 64], scale_range=[1.0, 1.0], flip=False, brightness=0.0)
    tr = Trainer(cfg, log=lambda *_: None)
    tr._plan = StepBatches(len(tr.train_set), 2, cfg["seed"])
    tr.refresh_fused_cache(0)
    batch = tr.fused_batch(5)
    plain = tr.train_set.without_augmentation()
    keys = tr._plan.indices(5)
    vis = torch.stack([plain[i]["vis"] for i, _ in keys])
    ir = torch.stack([plain[i]["ir"] for i, _ in keys])
    with torch.no_grad():
        expected = tr.model.fuse(vis, ir)[1]
    assert batch["vis"].shape == expected.shape == (2, 3, 48, 64)
    assert torch.allclose(batch["vis"], expected, atol=0.5 / 255 + 1e-6)
    assert torch.equal(batch["label"], torch.stack([plain[i]["label"] for i, _ in keys]))
    # a whole run with the cache: the cached steps train Psi only, and resume stays exact
    full = _config(tmp_path, root, out="cfull", fused_cache=True, seg_iters=2, fusion_iters=1)
    train(full, log=lambda *_: None)

    Interrupted = _stopping_after(0)  # stops after step 1, inside the first seg phase

    part = _config(tmp_path, root, out="cpart", fused_cache=True, seg_iters=2, fusion_iters=1)
    Interrupted(part, log=lambda *_: None).run()
    assert torch.load(tmp_path / "cpart" / "last.pt", weights_only=False)["state"]["step"] == 1
    train(part, log=lambda *_: None)
    a = torch.load(tmp_path / "cfull" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "cpart" / "last.pt", weights_only=False)
    assert a["state"]["seg_steps"] == b["state"]["seg_steps"] == 4
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k


@pytest.mark.parametrize("cached", [False, True])
def test_fusion_crop_sizes_the_fusion_and_warmup_batches_only(tmp_path, cached):
    root = tmp_path / "data"
    _dataset(root, ["a", "b", "c", "d"])
    cfg = _config(tmp_path, root, out=f"fc{cached}", fused_cache=cached, rounds=1, seg_iters=2,
                  fusion_iters=2, fusion_warmup_iters=1)
    cfg["data"].update(crop=[48, 64], fusion_crop=[32, 32])
    seen = []

    class Recording(Trainer):
        def train_step(self, batch, phase):
            seen.append((phase, tuple(batch["vis"].shape[-2:])))
            return super().train_step(batch, phase)

    Recording(cfg, log=lambda *_: None).run()
    assert seen == [("warmup", (32, 32))] + [("seg", (48, 64))] * 2 + [("fusion", (32, 32))] * 2


def test_final_segmentation_phase_follows_the_rounds(tmp_path):
    root = tmp_path / "data"
    _dataset(root, ["a", "b", "c", "d"])
    cfg = _config(tmp_path, root, out="final", fused_cache=True, rounds=1, seg_iters=1,
                  fusion_iters=1, fusion_warmup_iters=1, final_seg_iters=2)
    tr = Trainer(cfg, log=lambda *_: None)
    assert [tr.phase_of(s) for s in range(5)] == [(-1, "warmup"), (0, "seg"), (0, "fusion"),
                                                  (1, "seg"), (1, "seg")]
    events = []

    class Recording(Trainer):
        def train_step(self, batch, phase):
            row = super().train_step(batch, phase)
            events.append((phase, {k: v.clone() for k, v in self.model.fusion.state_dict()
                                   .items()}))
            return row

        def refresh_fused_cache(self, rnd):
            events.append((f"cache{rnd}", {k: v.clone() for k, v in
                                           self.model.fusion.state_dict().items()}))
            return super().refresh_fused_cache(rnd)

    summary = Recording(cfg, log=lambda *_: None).run()
    assert summary["steps"] == 5 and summary["seg_steps"] == 3 and summary["fusion_steps"] == 2
    assert [e for e, _ in events] == ["warmup", "cache0", "seg", "fusion", "cache1", "seg",
                                      "seg"]
    # the final phase's images come from the Phi of the last fusion step, which Phi keeps
    after_fusion, at_cache, at_end = events[3][1], events[4][1], events[6][1]
    for k, v in after_fusion.items():
        assert torch.equal(v, at_cache[k]) and torch.equal(v, at_end[k]), k
    with pytest.raises(ValueError, match="final_seg_iters"):
        Trainer(_config(tmp_path, root, out="bad", final_seg_iters=-1), log=lambda *_: None)
    with pytest.raises(ValueError, match="val_absent"):
        Trainer(_config(tmp_path, root, out="bad2", val_absent="nan"), log=lambda *_: None)


def test_init_copies_the_named_parts_of_a_release_checkpoint(tmp_path):
    from segmif_core.checkpoint import save_checkpoint
    from segmif_core.data.classes import get_class_set
    root = tmp_path / "data"
    _dataset(root, ["a", "b", "c"])
    torch.manual_seed(123)
    donor = build_model("segmif", dict(TINY, num_classes=9))
    save_checkpoint(tmp_path / "donor.pt", donor, get_class_set("mfnet"), (48, 64))
    cfg = _config(tmp_path, root, out="init",
                  init={"checkpoint": str(tmp_path / "donor.pt"), "parts": ["fusion"]})
    tr = Trainer(cfg, log=lambda *_: None)
    for k, v in donor.fusion.state_dict().items():  # fp16 in the release checkpoint
        assert torch.equal(tr.model.fusion.state_dict()[k], v.half().float()), k
    assert not all(torch.equal(tr.model.segmenter.state_dict()[k], v)
                   for k, v in donor.segmenter.state_dict().items())
    with pytest.raises(ValueError, match="parts"):
        Trainer(_config(tmp_path, root, out="i2", init={"checkpoint": str(tmp_path / "donor.pt"),
                                                         "parts": ["decoder"]}),
                log=lambda *_: None)
    wide = _config(tmp_path, root, out="i3", init={"checkpoint": str(tmp_path / "donor.pt")})
    wide["model"]["config"] = dict(TINY, fusion_width=16)
    with pytest.raises(ValueError, match="does not fit"):
        Trainer(wide, log=lambda *_: None)


def test_learning_rate_warmup_linear_or_constant_then_poly():
    from segmif_core.training.schedule import _lr
    oc = {"lr": 1e-3, "lr_min": 0.0, "warmup_iters": 10, "warmup_lr": 1e-5, "poly_power": 1.0}
    # linear (default): 1e-5 at step 0, half way at step 5, then poly from lr at step 10
    assert _lr(oc, 0, 110, 0.0) == pytest.approx(1e-5)
    assert _lr(oc, 5, 110, 0.0) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))
    assert _lr(oc, 10, 110, 0.0) == pytest.approx(1e-3)
    assert _lr(oc, 60, 110, 0.0) == pytest.approx(0.5e-3)        # (1 - 50/100)^1
    assert _lr(oc, 60, 110, 0.75) == pytest.approx(0.25e-3)      # the time budget is ahead
    constant = dict(oc, warmup="constant")
    assert _lr(constant, 9, 110, 0.0) == pytest.approx(1e-5)
    with pytest.raises(ValueError, match="warmup"):
        _lr(dict(oc, warmup="cosine"), 3, 110, 0.0)


class _FixedLabels(torch.nn.Module):
    """A stand-in model that predicts the given label map (no fusion network)."""

    def __init__(self, labels):
        super().__init__()
        self.labels = labels

    def predict(self, vis, ir):
        return {"labels": self.labels[None]}


@pytest.mark.parametrize("absent, clean, stray", [
    # by hand, 3 classes, GT: left half 0, right half 1 (8 + 8 pixels); class 2 never in GT;
    # "stray": the prediction is right except one class-0 pixel called class 2
    # (IoU 0 = 7/8, IoU 1 = 8/8, IoU 2 = 0/1)
    ("zero", (1 + 1 + 0) / 3, (7 / 8 + 1 + 0) / 3),
    ("present", (1 + 1) / 2, (7 / 8 + 1) / 2),
    ("skip", (1 + 1) / 2, (7 / 8 + 1 + 0) / 3),
])
def test_validation_miou_protocol_for_classes_absent_from_val(absent, clean, stray):
    """The trainer's val mIoU (train.val_absent, default 'zero'): under 'skip' one stray pixel
    of a class without ground truth moves the mean from /2 to /3; under 'zero' and 'present'
    only through the IoU of the class it was taken from."""
    gt = torch.zeros(4, 4, dtype=torch.int64)
    gt[:, 2:] = 1
    batch = {"vis": torch.zeros(1, 3, 4, 4), "ir": torch.zeros(1, 1, 4, 4), "label": gt[None]}
    wrong = gt.clone()
    wrong[0, 0] = 2
    got_clean = evaluate(_FixedLabels(gt), [batch], 3, "cpu", absent=absent)["mIoU"]
    got_stray = evaluate(_FixedLabels(wrong), [batch], 3, "cpu", absent=absent)["mIoU"]
    assert got_clean == pytest.approx(100 * clean)
    assert got_stray == pytest.approx(100 * stray)
    if absent == "zero":  # the default of the trainer
        assert evaluate(_FixedLabels(wrong), [batch], 3, "cpu")["mIoU"] == pytest.approx(
            100 * stray)


def test_ema_averages_the_weights_and_resumes(tmp_path):
    """train.ema: after every step E <- d * E + (1 - d) * W (the first step copies W), over
    parameters and BatchNorm statistics; final_ema.pt holds E, final.pt W, and an interrupted
    run resumes the average exactly. Expected E computed here from the recorded weights."""
    root = tmp_path / "data"
    _dataset(root, ["a", "b", "c", "d", "e"])
    seen = []

    class Recording(Trainer):
        def train_step(self, batch, phase):
            row = super().train_step(batch, phase)
            seen.append({k: v.detach().clone().double()
                         for k, v in self.model.state_dict().items() if v.is_floating_point()})
            return row

    Recording(_config(tmp_path, root, out="full", ema=0.75), log=lambda *_: None).run()
    assert len(seen) == 6
    expect = dict(seen[0])
    for w in seen[1:]:
        expect = {k: 0.75 * expect[k] + 0.25 * w[k] for k in expect}
    run = tmp_path / "full"
    ema_model, _, ema_info = load_checkpoint(run / "final_ema.pt")
    fin_model, _, fin_info = load_checkpoint(run / "final.pt")
    ema_sd, fin_sd = ema_model.state_dict(), fin_model.state_dict()
    moved = 0
    for k, e in expect.items():  # fp16 checkpoints: compare at fp16 precision
        assert torch.allclose(ema_sd[k].double(), e, rtol=2e-3, atol=2e-3), k
        assert torch.allclose(fin_sd[k].double(), seen[-1][k], rtol=2e-3, atol=2e-3), k
        moved += int(not torch.allclose(e, seen[-1][k], rtol=1e-2, atol=1e-2))
    assert moved > 0  # the average differs from the last weights somewhere
    assert ema_info["meta"]["ema"] == 0.75 and fin_info["meta"]["val"]["step"] == 6
    rows = (run / "log.csv").read_text().strip().splitlines()
    val_row = dict(zip(rows[0].split(","), rows[3].split(",")))
    assert 0 <= float(val_row["val_mIoU_ema"]) <= 100
    # final.pt / final_ema.pt carry the validation of the last step (the log's step-6 row)
    last_row = dict(zip(rows[0].split(","), rows[6].split(",")))
    assert last_row["step"] == "6"
    assert round(fin_info["meta"]["val"]["mIoU"], 3) == float(last_row["val_mIoU"])
    assert round(ema_info["meta"]["val"]["mIoU"], 3) == float(last_row["val_mIoU_ema"])
    assert ema_info["meta"]["val"]["step"] == 6
    assert fin_info["meta"]["val"]["selection"] == "the final step of the schedule"
    # best_ema.pt holds the average at its own step (validations at steps 3 and 6)
    best_model, _, best_info = load_checkpoint(run / "best_ema.pt")
    at = best_info["meta"]["val"]["step"]
    assert at in (3, 6)
    expect_at = dict(seen[0])
    for w in seen[1:at]:
        expect_at = {k: 0.75 * expect_at[k] + 0.25 * w[k] for k in expect_at}
    best_sd = best_model.state_dict()
    for k, e in expect_at.items():
        assert torch.allclose(best_sd[k].double(), e, rtol=2e-3, atol=2e-3), k
    # BatchNorm's step counter is copied, not averaged
    counts = [k for k in torch.load(run / "last.pt", weights_only=False)["ema"]
              if k.endswith("num_batches_tracked")]
    last = torch.load(run / "last.pt", weights_only=False)
    assert counts and all(torch.equal(last["ema"][k], last["model"][k.replace("module.", "", 1)])
                          for k in counts)

    Interrupted = _stopping_after(3)

    part = _config(tmp_path, root, out="part", ema=0.75)
    Interrupted(part, log=lambda *_: None).run()
    assert not (tmp_path / "part" / "final.pt").exists()  # interrupted: no final checkpoint
    with pytest.raises(ValueError, match="train.ema"):  # resumed with another decay: refused
        Trainer(_config(tmp_path, root, out="part", ema=0.5), log=lambda *_: None)
    train(part, log=lambda *_: None)
    assert (tmp_path / "part" / "final_ema.pt").exists()
    a = torch.load(run / "last.pt", weights_only=False)["ema"]
    b = torch.load(tmp_path / "part" / "last.pt", weights_only=False)["ema"]
    for k, v in a.items():
        assert torch.equal(v, b[k]), k


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, "fast"])
def test_ema_decay_outside_0_1_is_refused(tmp_path, bad):
    root = tmp_path / "data"
    _dataset(root, ["a", "b", "c"])
    with pytest.raises(ValueError, match="train.ema"):
        Trainer(_config(tmp_path, root, ema=bad), log=lambda *_: None)
