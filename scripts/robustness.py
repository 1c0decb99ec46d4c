"""Robustness figures of segmif_node (issue 14 item 8): fuzz, soak and start-up errors.

    .venv/bin/python scripts/robustness.py [--phases fuzz,soak,startup] [--messages 10000]
        [--soak-seconds 600] [--soak-rate HZ] [--out runs/robustness/robustness.json]

Each phase starts ``python -m segmif_ros.node`` as its own process (this source tree first on
PYTHONPATH) on a localhost-only, shared-memory-only ROS 2 graph with a ROS_DOMAIN_ID of its own
(``local_ros_env(large_shm=True)``), with a tiny random SegMiF checkpoint (made here, 64x64
network input, 1 thread) so that the node keeps up on a small CPU. Inputs are published
reliable (the node runs with ``input_qos:=reliable``) and valid pairs are paced (the next one
after the answer of the last) so that none is lost or dropped by design.

fuzz      ``--messages`` malformed / unusual messages in categories (scripts/robustness_lib.py,
          CATEGORIES), one valid pair after every ``--unit`` single messages, each category a
          block whose counter deltas (/diagnostics, read once the node has received all we sent)
          are checked against what the category needs; node alive, valid pairs answered (by
          stamp), log lines per minute, VmRSS every second. CompressedImage categories run
          (a second node with input_transport:=compressed) only when the node declares that
          parameter.
soak      closed-loop rate measurement, then valid pairs at ``--soak-rate`` for
          ``--soak-seconds`` plus a visible-only stream of up to ``--visible-only-rate`` (30 Hz)
          and at most one image per pair: a visible image stamped half-way between two pairs,
          published right after the first of them (so every stream's stamps increase), which the
          synchroniser must drop as unmatched; VmRSS and latency (publication of the pair to
          segmentation/labels receipt) every 10 s. Pairs are stamped on a grid (the wall clock
          at the phase start plus multiples of the pair period), visible-only images at the
          half-multiples. Default rate: 90 % of the measured rate, and while the visible-only
          stream runs at most 1 / (2.5 slop) = 20 pairs/s (the half-way stamp is then 1.25 slop
          from both pairs; above 1 / (2 slop) = 25 pairs/s it would not be more than slop from
          them, and an explicit ``--soak-rate`` that high is refused); ``--visible-only-rate 0``
          soaks at 90 % of capacity without that stream.
startup   the node with a truncated / random / empty / missing / foreign checkpoint, a singular
          or wrong-length homography, device cuda (none here) and an unknown device: exit code,
          seconds to exit, output lines, tracebacks; and a good start for comparison.

Prints a summary and writes the JSON (atomically). Not a test: figures for the README.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import robustness_lib as L  # noqa: E402
from robustness_lib import NS  # noqa: E402

QUEUE_SIZE = 5
SLOP_NS = 20_000_000

#: rejection reasons the node applies on arrival (before the synchroniser)
AT_INPUT = ("encoding", "malformed", "step", "undecodable", "channels", "depth")


def node_params(ckpt: Path, extra: dict | None = None) -> dict:
    p = {"checkpoint": str(ckpt), "input_height": 64, "input_width": 64, "threads": 1,
         "input_qos": "reliable", "queue_size": QUEUE_SIZE}
    p.update(extra or {})
    return p


class Stamps:
    """Pair stamps: the wall clock (plus ``offset``), at least 50 ms after the last pair, so
    that single messages stamped 25 ms after a pair (:meth:`single`) are more than ``slop``
    from every pair."""

    def __init__(self):
        self.last, self.offset, self.n = None, 0, 0

    def pair(self) -> int:
        t = time.time_ns() + self.offset
        if self.last is not None and self.offset == 0:
            t = max(t, self.last + 100_000_000)
        self.last = t
        return t

    def single(self, stream: str) -> int:
        """Visible singles 25 ms, thermal singles 75 ms after the last pair (the next pair is
        at least 100 ms after it): more than slop from each other and from every pair."""
        self.n += 1
        return (self.last or time.time_ns()) + (25_000_000 if stream == "visible" else
                                                75_000_000) + self.n % 1_000_000


# ------------------------------------------------------------------------------------- fuzz
class Fuzz:
    def __init__(self, client: L.Client, proc: L.NodeProcess, args, transport: str = "raw"):
        self.c, self.proc, self.args = client, proc, args
        self.transport = transport
        self.stamps = Stamps()
        self.k = 0
        self.valid_sent = self.valid_answered = 0
        self.unanswered = []  # (category, stamp)
        self.timeouts_in_row = 0

    def valid_pair(self, category: str, make=None, wait: bool = True, k=None) -> tuple:
        """Publish a pair (valid unless ``make``), wait for its answer; returns (stamp, answered)."""
        from robustness_cases import c_valid_pair, valid

        self.k += 1
        k = self.k if k is None else k
        s = self.stamps.pair()
        if make is None and self.transport == "compressed":
            make = c_valid_pair
        vis, ir = make(k, s) if make else (valid("visible", k, s), valid("thermal", k, s))
        self.c.publish("visible", vis)
        self.c.publish("thermal", ir)
        if not wait:
            return s, None
        ok = self.c.wait_answer(s, self.args.answer_timeout)
        if ok:  # segmentation/info is the node's last output of a frame
            self.c.wait_info(s, 2.0)
        self.timeouts_in_row = 0 if ok else self.timeouts_in_row + 1
        return s, ok

    def control(self, category: str) -> None:
        s, ok = self.valid_pair(category)
        self.valid_sent += 1
        if ok:
            self.valid_answered += 1
        else:
            self.unanswered.append((category, s))

    def block(self, name, kind, n_bad, make, extra) -> dict:
        """One category: ``n_bad`` malformed messages with valid pairs in between; counter
        deltas over the block and what they must be."""
        before, exact0 = self.c.settled_counters(time.time_ns())
        before = L.counters(before)
        sent0 = sum(self.c.sent.values())
        v0, a0 = self.valid_sent, self.valid_answered
        t0 = time.monotonic()
        bad_per = extra.get("bad_per", 1)
        items = max(1, round(n_bad / bad_per))
        answered = refused_or_other = 0
        be_equal = be_compared = 0
        pace = self.args.pace_ms / 1e3
        for i in range(items):
            if kind in ("reject", "stamp"):
                stream, msg = make(i, 0)
                if kind == "reject":
                    L.set_stamp(msg, self.stamps.single(stream))
                self.c.publish(stream, msg)
                time.sleep(pace)
                if (i + 1) % self.args.unit == 0 or i == items - 1:
                    self.control(name)
            elif kind == "pair_reject":
                self.valid_pair(name, make, wait=False, k=i)
                time.sleep(0.01)  # the worker takes (and refuses) it before the next pair
                if (i + 1) % 5 == 0 or i == items - 1:
                    self.control(name)
            elif extra.get("jump_back_s"):
                if i == 0:
                    self.stamps.offset = -int(extra["jump_back_s"] * NS)
                    self.stamps.last = None
                _, ok = self.valid_pair(name)
                answered += bool(ok)
                if i == items - 1:
                    self.stamps.offset, self.stamps.last = 0, None
                    self.control(name)
            elif "twin" in extra:  # big-endian pair, then the same pixels little-endian
                for maker in (make, extra["twin"]):
                    s = self.stamps.pair()
                    self.c.keep_labels.add(s)
                    vis, ir = maker(i, s)
                    self.c.publish("visible", vis)
                    self.c.publish("thermal", ir)
                    ok = self.c.wait_answer(s, self.args.answer_timeout)
                    if maker is make:
                        answered += bool(ok)
                        s_be = s
                    elif ok and s_be in self.c.labels:
                        be_compared += 1
                        be_equal += self.c.labels[s_be] == self.c.labels[s]
                if i == items - 1:
                    self.control(name)
            else:  # pair_either / pair_accept: wait for the answer (or a refusal)
                s, ok = self.valid_pair(name, make, wait=True, k=i)
                answered += bool(ok)
                if kind == "pair_either" and not ok:
                    refused_or_other += 1
                if kind == "pair_either" and (i + 1) % 5 == 0 or i == items - 1:
                    self.control(name)
            if self.timeouts_in_row >= 5 or not self.proc.alive():
                break
        after, exact = self.c.settled_counters(time.time_ns(), timeout=10.0)
        after = L.counters(after)
        d = L.delta(after, before)
        rej_input = sum(d.get(f"rejected:{r}") or 0 for r in AT_INPUT)
        rej_any = d.get("messages_rejected") or 0
        sent_msgs = items if kind in ("reject", "stamp") else items * 2
        # messages the node never received (reliable, but its reader history is queue_size deep)
        lost = sum(self.c.sent.values()) - sent0 - (d.get("received_visible") or 0) - \
            (d.get("received_thermal") or 0)
        row = {"category": name, "kind": kind, "items": items, "malformed_messages":
               items * (1 if kind in ("reject", "stamp") else bad_per),
               "messages_sent": sent_msgs, "seconds": round(time.monotonic() - t0, 1),
               "valid_pairs": self.valid_sent - v0,
               "valid_answered": self.valid_answered - a0,
               "rejected": {k[len("rejected:"):]: v for k, v in d.items()
                            if k.startswith("rejected:") and v},
               "messages_rejected": rej_any, "unmatched": d.get("messages_unmatched"),
               "pairs_dropped": d.get("pairs_dropped"), "sync_resets": d.get("sync_resets"),
               "processing_errors": d.get("processing_errors"),
               "lost_in_transport": lost, "counters_exact": bool(exact0 and exact)}
        # what the category must show
        if kind == "reject":
            reasons = extra["reasons"]
            if reasons is None:  # any reason
                rej_input = rej_any
            ok = rej_input >= items - lost and (reasons is None or set(row["rejected"]) <= set(reasons))
            row["expect"] = (f"all {items} rejected on arrival "
                             f"({'/'.join(reasons) if reasons else 'any reason'})")
            if not ok:
                row["found"] = (f"{rej_input} rejected on arrival, {rej_any} in all "
                                f"({row['rejected']}), {row['unmatched']} unmatched")
        elif kind == "stamp":
            unmatched = d.get("messages_unmatched") or 0
            # junk stamps of the two inputs may pair with each other (e.g. now + 3 s on visible
            # and, 0.25 s later, now + 2.75 s on thermal): counted as matched (then dropped or
            # published), not lost
            junk_pairs = (d.get("pairs_matched") or 0) - row["valid_pairs"]
            row["junk_pairs_matched"] = junk_pairs
            ok = rej_any == 0 and unmatched + 2 * junk_pairs >= items - 2 * QUEUE_SIZE - lost
            row["expect"] = (f"none rejected, all {items} unmatched or paired among themselves "
                             f"(up to {2 * QUEUE_SIZE} still queued), every valid pair answered")
            if not ok:
                row["found"] = (f"{rej_any} rejected, {unmatched} unmatched, {junk_pairs} "
                                "junk pairs")
        elif kind == "pair_reject":
            dropped = d.get("pairs_dropped") or 0
            ok = rej_any + dropped >= items and (d.get("pairs_processed") or 0) == \
                row["valid_answered"]
            row["expect"] = f"all {items} pairs refused ({'/'.join(extra['reasons'])}) or dropped"
            if not ok:
                row["found"] = (f"{rej_any} refused, {dropped} dropped, "
                                f"{d.get('pairs_processed')} processed")
        elif kind == "pair_either":
            row["answered"] = answered
            dropped = d.get("pairs_dropped") or 0
            ok = answered + rej_any + dropped >= items
            row["expect"] = f"each of {items} pairs published, refused or dropped (counted)"
            if not ok:
                row["found"] = f"{answered} published, {rej_any} refused, {dropped} dropped"
        else:
            row["answered"] = answered
            ok = answered == items
            row["expect"] = f"all {items} pairs answered"
            if "twin" in extra:
                row["bigendian_equals_littleendian"] = f"{be_equal}/{be_compared}"
                ok = ok and be_equal == be_compared == items
            if not ok:
                row["found"] = f"{answered} answered ({row['rejected']} rejected)"
        ok = ok and row["valid_answered"] == row["valid_pairs"]
        if row["valid_answered"] != row["valid_pairs"]:
            row.setdefault("found", "")
            row["found"] += (f" {row['valid_pairs'] - row['valid_answered']} valid pairs "
                             "unanswered").strip()
        row["ok"] = bool(ok)
        kb = self.proc.rss_kb()
        row["rss_mb_after"] = round(kb / 1024, 1) if kb else None
        return row


def run_fuzz(args, env, ckpt, out_dir: Path, transport: str = "raw") -> dict:
    import robustness_cases as C

    log_path = out_dir / f"fuzz_{transport}_node.log"
    extra = {"input_transport": "compressed"} if transport == "compressed" else None
    proc = L.NodeProcess(node_params(ckpt, extra), log_path, env)
    client = L.Client(transport)
    result = {"transport": transport, "node_log": str(log_path)}
    sampler = None
    try:
        result["startup_s"] = round(client.wait_for_node(proc, transport=transport), 1)
        params = client.list_parameters() or []
        result["node_parameters"] = len(params)
        result["compressed_supported"] = "input_transport" in params
        fuzz = Fuzz(client, proc, args, transport)
        for _ in range(5):  # warm-up: the first inferences are slow
            fuzz.control("warmup")
        sampler = L.RssSampler(proc.pid, 1.0)
        sampler.start()
        t_start_wall, t0 = time.time(), time.monotonic()
        cats = C.CATEGORIES if transport == "raw" else C.COMPRESSED_CATEGORIES
        total_w = sum(c[2] for c in cats)
        rows = []
        for name, kind, weight, make, extra_c in cats:
            n_bad = max(1, round(args.messages * weight / total_w))
            row = fuzz.block(name, kind, n_bad, make, extra_c)
            rows.append(row)
            print(f"  [{transport}] {name:28s} {'ok ' if row['ok'] else 'BAD'} "
                  f"{row['malformed_messages']:5d} msgs, rejected {row['messages_rejected']}"
                  f" {row['rejected']}, unmatched {row['unmatched']}, lost "
                  f"{row['lost_in_transport']}, rss {row['rss_mb_after']} MB, valid "
                  f"{row['valid_answered']}/{row['valid_pairs']} ({row['seconds']} s)"
                  + (f"  -- {row['found']}" if row.get("found") else ""), flush=True)
            if not proc.alive():
                break
        duration = time.monotonic() - t0
        t_end_wall = time.time()
        final, exact = client.settled_counters(time.time_ns(), timeout=10.0)
        sampler.stop()
        info = client.info
        alive = proc.alive()
        result.update({
            "categories": rows, "seconds": round(duration, 1), "node_alive": alive,
            "exit_code": None if alive else proc.proc.returncode,
            "malformed_messages": sum(r["malformed_messages"] for r in rows),
            "messages_sent": dict(client.sent),
            "valid_pairs": fuzz.valid_sent, "valid_answered": fuzz.valid_answered,
            "unanswered": [{"category": c, "stamp_ns": s} for c, s in fuzz.unanswered],
            "counters_diagnostics": L.counters(final), "counters_exact": exact,
            "counters_segmentation_info": None if info is None else {
                k: int(getattr(info, k)) for k in (
                    "received_visible", "received_thermal", "messages_rejected",
                    "pairs_matched", "pairs_processed", "pairs_dropped", "messages_unmatched",
                    "processing_errors", "sync_resets")},
            "categories_failed": [r["category"] for r in rows if not r["ok"]],
        })
        c = result["counters_diagnostics"]
        if None not in (c.get("received_visible"), c.get("messages_unmatched")):
            at_input = sum(c.get(f"rejected:{r}") or 0 for r in AT_INPUT)
            result["messages_unaccounted"] = (c["received_visible"] + c["received_thermal"]
                                              - at_input - 2 * c["pairs_matched"]
                                              - c["messages_unmatched"])
        result["rss"] = rss_summary(sampler.samples)
        result["rss_series_mb"] = [(round(t - t0, 1), round(kb / 1024, 1))
                                   for t, kb in sampler.samples[::10]]
        result["log"] = log_rates(log_path, t_start_wall, t_end_wall)
    finally:
        if sampler is not None and sampler.is_alive():
            sampler.stop()
        client.close()
        result["exit_code_on_sigint"] = proc.stop()
    return result


def rss_summary(samples) -> dict:
    if not samples:
        return {}
    kb = [s[1] for s in samples]
    return {"start_mb": round(kb[0] / 1024, 1), "end_mb": round(kb[-1] / 1024, 1),
            "max_mb": round(max(kb) / 1024, 1), "min_mb": round(min(kb) / 1024, 1),
            "growth_pct": round(100.0 * (kb[-1] - kb[0]) / kb[0], 2), "samples": len(kb)}


def log_rates(path: Path, t_from: float, t_to: float) -> dict:
    """Node log lines between two wall-clock times: per minute (all, warnings, errors), the
    busiest minute, tracebacks."""
    lines = L.parse_log(path)
    inside = [x for x in lines if x[1] is not None and t_from <= x[1] <= t_to]
    minutes = max((t_to - t_from) / 60.0, 1e-9)
    warn = [x for x in inside if x[0] == "WARN"]
    err = [x for x in inside if x[0] in ("ERROR", "FATAL")]
    times = sorted(x[1] for x in inside)
    busiest = 0
    j = 0
    for i, t in enumerate(times):  # the most lines in any 60 s window
        while times[j] < t - 60:
            j += 1
        busiest = max(busiest, i - j + 1)
    return {"lines": len(inside), "minutes": round(minutes, 2),
            "lines_per_minute": round(len(inside) / minutes, 1),
            "warnings_per_minute": round(len(warn) / minutes, 1),
            "errors_per_minute": round(len(err) / minutes, 1),
            "busiest_60s_lines": busiest,
            "tracebacks": sum("Traceback (most recent call last)" in x[3] for x in lines),
            "other_lines": sum(x[0] is None for x in lines),
            "examples": sorted({x[3][:160] for x in warn})[:12]}


# ------------------------------------------------------------------------------------- soak
def run_soak(args, env, ckpt, out_dir: Path) -> dict:
    import robustness_cases as C

    log_path = out_dir / "soak_node.log"
    proc = L.NodeProcess(node_params(ckpt), log_path, env)
    client = L.Client()
    result = {"node_log": str(log_path), "seconds": args.soak_seconds}
    try:
        vis_on = args.visible_only_rate > 0
        if args.soak_rate is not None and (args.soak_rate <= 0 or (
                vis_on and int(1e9 / args.soak_rate) // 2 <= SLOP_NS)):
            raise SystemExit(f"--soak-rate {args.soak_rate}: must be > 0 and, with the "
                             f"visible-only stream, below {1e9 / (2 * SLOP_NS):.0f} pairs/s (its "
                             f"images must be more than slop, {SLOP_NS / 1e6:.0f} ms, from both "
                             f"neighbouring pairs); or use --visible-only-rate 0")
        result["startup_s"] = round(client.wait_for_node(proc), 1)
        # closed loop: the next pair once the last is answered = the most the node sustains;
        # wall-clock stamps (no Stamps() spacing: it would run the stamps ahead of the clock and
        # the soak's first pair would then look like a clock jump back to the node)
        n, last, t0 = 0, 0, time.monotonic()
        while time.monotonic() - t0 < args.measure_seconds:
            s = last = max(time.time_ns(), last + 1)
            client.publish("visible", C.valid("visible", 0, s))
            client.publish("thermal", C.valid("thermal", 0, s))
            if client.wait_answer(s, 10.0):
                n += 1
        closed = n / (time.monotonic() - t0)
        rate = args.soak_rate or round(0.9 * closed, 2)
        if not args.soak_rate and vis_on:
            rate = min(rate, round(1e9 / (2.5 * SLOP_NS), 2))
        if rate <= 0:
            raise SystemExit(f"the node answered {n} pairs in the {args.measure_seconds} s "
                             "closed-loop measurement: no rate to soak at (see the node log "
                             f"{log_path})")
        period_ns = int(1e9 / rate)
        result.update({"closed_loop_rate_hz": round(closed, 2), "pair_rate_hz": rate,
                       "visible_only_rate_hz": args.visible_only_rate})
        print(f"  [soak] closed-loop {closed:.2f} pairs/s; soak at {rate} pairs/s + up to "
              f"{args.visible_only_rate} Hz visible-only for {args.soak_seconds} s", flush=True)
        before = L.counters(client.settled_counters(time.time_ns())[0])
        pair_stamps, samples, published = [], [], {}
        vperiod = 1.0 / args.visible_only_rate if vis_on else float("inf")
        base_ns = max(time.time_ns(), last + period_ns)
        t0 = time.monotonic()
        next_vis, next_sample = (t0 if vis_on else float("inf")), t0 + 10.0
        window_start = visible_only_sent = 0
        late_s = 0.0  # the most a pair was published after its scheduled time
        k = 0
        while True:
            now = time.monotonic()
            if now - t0 >= args.soak_seconds:
                break
            if now >= t0 + k * period_ns / 1e9:
                s = base_ns + k * period_ns
                k += 1
                late_s = max(late_s, now - (t0 + (k - 1) * period_ns / 1e9))
                published[s] = time.time_ns()
                client.publish("visible", C.valid("visible", k, s))
                client.publish("thermal", C.valid("thermal", k, s))
                pair_stamps.append(s)
                if now >= next_vis:  # half-way to the next pair: unmatched by construction
                    client.publish("visible", C.valid("visible", 0, s + period_ns // 2))
                    visible_only_sent += 1
                    next_vis += vperiod
            if now >= next_sample:
                samples.append(soak_sample(client, proc, pair_stamps, window_start, now - t0,
                                           published))
                window_start = len(pair_stamps)
                next_sample += 10.0
                if not proc.alive():
                    break
            time.sleep(max(0.0, min(t0 + k * period_ns / 1e9, next_sample,
                                          t0 + args.soak_seconds) - time.monotonic()))
        time.sleep(2.0)
        after = L.counters(client.settled_counters(time.time_ns(), timeout=5.0)[0])
        d = L.delta(after, before)
        answered = sum(1 for s in pair_stamps if s in client.answers)
        rss = [x["rss_mb"] for x in samples if x["rss_mb"]]
        lat = [x for x in samples if x["latency_p50_ms"] is not None]
        first = [x["latency_p50_ms"] for x in lat if x["t_s"] <= 60] or \
            [x["latency_p50_ms"] for x in lat[:max(1, len(lat) // 5)]]
        last = [x["latency_p50_ms"] for x in lat if x["t_s"] > lat[-1]["t_s"] - 60] if lat \
            else []
        result.update({
            "node_alive": proc.alive(), "pairs_sent": len(pair_stamps), "pairs_answered": answered,
            "visible_only_sent": visible_only_sent,
            "visible_only_sent_hz": round(visible_only_sent / args.soak_seconds, 2),
            "publish_late_max_ms": round(1e3 * late_s, 1),
            "answered_pct": round(100.0 * answered / max(1, len(pair_stamps)), 1),
            "counters_delta": d, "samples": samples,
            "rss_first_mb": rss[0] if rss else None, "rss_last_mb": rss[-1] if rss else None,
            "rss_max_mb": max(rss) if rss else None,
            "rss_growth_pct": round(100.0 * (rss[-1] - rss[0]) / rss[0], 2) if rss else None,
            "latency_p50_first_minute_ms": round(float(np.median(first)), 1) if first else None,
            "latency_p50_last_minute_ms": round(float(np.median(last)), 1) if last else None,
            "log": log_rates(log_path, time.time() - args.soak_seconds - 5, time.time()),
        })
    finally:
        client.close()
        result["exit_code_on_sigint"] = proc.stop()
    return result


def soak_sample(client, proc, stamps, start, t_s, published=None) -> dict:
    """One row of the soak: VmRSS and the latency of the pairs since the last row, from each
    pair's publication (``published``: stamp -> wall-clock ns; default the stamp itself) to the
    receipt of its labels."""
    window = stamps[start:]
    published = published or {}
    with client.cond:
        lat = [(client.answers[s] - published.get(s, s)) / 1e6 for s in window
               if s in client.answers]
        node_lat = [client.info_latency[s] for s in window if s in client.info_latency]
    kb = proc.rss_kb()
    row = {"t_s": round(t_s, 1), "rss_mb": round(kb / 1024, 1) if kb else None,
           "pairs_sent": len(window), "pairs_answered": len(lat),
           "latency_p50_ms": round(L.percentile(lat, 50), 1) if lat else None,
           "latency_p95_ms": round(L.percentile(lat, 95), 1) if lat else None,
           "node_latency_p50_ms": round(L.percentile(node_lat, 50), 1) if node_lat else None}
    print(f"  [soak] t={row['t_s']:6.1f} s rss {row['rss_mb']} MB, answered "
          f"{row['pairs_answered']}/{row['pairs_sent']}, latency p50 {row['latency_p50_ms']}"
          f" p95 {row['latency_p95_ms']} ms", flush=True)
    return row


# ------------------------------------------------------------------------------------- start-up
def startup_cases(ckpt: Path, tmp: Path) -> list:
    import torch

    good = ckpt.read_bytes()
    (tmp / "truncated.pt").write_bytes(good[:len(good) // 2])
    (tmp / "random.pt").write_bytes(np.random.default_rng(0).integers(0, 256, 65536,
                                                                      dtype=np.uint8).tobytes())
    (tmp / "empty.pt").write_bytes(b"")
    torch.save({"weights": [1, 2, 3]}, tmp / "foreign.pt")
    return [
        ("good checkpoint (control)", {}, 0),
        ("truncated checkpoint", {"checkpoint": tmp / "truncated.pt"}, 1),
        ("random-bytes checkpoint", {"checkpoint": tmp / "random.pt"}, 1),
        ("empty checkpoint", {"checkpoint": tmp / "empty.pt"}, 1),
        ("missing checkpoint", {"checkpoint": tmp / "does_not_exist.pt"}, 1),
        ("foreign torch file", {"checkpoint": tmp / "foreign.pt"}, 1),
        ("singular homography", {"homography": "[1.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,1.0]"}, 1),
        ("homography of 4 values", {"homography": "[1.0,0.0,0.0,1.0]"}, 1),
        ("device cuda (unavailable)", {"device": "cuda"}, 1),
        ("device cuda:7 (unavailable)", {"device": "cuda:7"}, 1),
        ("unknown device", {"device": "tpu"}, 1),
    ]


def import_floor(env) -> float:
    """Seconds for this Python to import what the node imports (torch, rclpy, segmif) and exit:
    the least any start-up can take on this host now."""
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", "import torch, rclpy, sensor_msgs.msg, "
                    "segmif_core.inference, segmif_ros.node"], env=env, cwd=str(L.REPO),
                   capture_output=True)
    return round(time.monotonic() - t0, 1)


def run_startup(args, env, ckpt, out_dir: Path) -> dict:
    rows = []
    floor = import_floor(env)
    print(f"  [startup] import floor (python -c 'import torch, rclpy, segmif...'): {floor} s",
          flush=True)
    with tempfile.TemporaryDirectory() as tmpdir:
        for name, extra, want_rc in startup_cases(ckpt, Path(tmpdir)):
            params = node_params(ckpt, {k: str(v) for k, v in extra.items()})
            t0 = time.monotonic()
            proc = subprocess.Popen(L.node_command(params), stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=env, cwd=str(L.REPO), text=True)
            try:
                out, err = proc.communicate(timeout=args.startup_timeout if want_rc else 30)
                rc, elapsed = proc.returncode, time.monotonic() - t0
            except subprocess.TimeoutExpired:
                elapsed = time.monotonic() - t0
                proc.send_signal(2)
                try:
                    out, err = proc.communicate(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    out, err = proc.communicate()
                rc = None  # still running after the timeout (the control case: up and running)
            lines = [x for x in (out + err).splitlines() if x.strip()]
            error_lines = [x for x in lines if not x.startswith("[INFO]")]
            row = {"case": name, "params": {k: str(v) for k, v in extra.items()},
                   "exit_code": rc, "seconds": round(elapsed, 1), "stdout_lines":
                   len([x for x in out.splitlines() if x.strip()]),
                   "stderr_lines": len([x for x in err.splitlines() if x.strip()]),
                   "non_info_lines": len(error_lines),
                   "traceback": "Traceback (most recent call last)" in out + err,
                   "first_error_line": error_lines[0][:300] if error_lines else None,
                   "expected_exit_code": want_rc if want_rc else "keeps running"}
            if want_rc:
                row["one_line_exit_1"] = rc == 1 and len(error_lines) == 1 and \
                    not row["traceback"]
                row["within_limit"] = elapsed <= args.startup_limit
                row["seconds_over_import_floor"] = round(elapsed - floor, 1)
                row["ok"] = row["one_line_exit_1"] and row["within_limit"]
            else:
                row["ok"] = rc is None
            rows.append(row)
            print(f"  [startup] {name:28s} {'ok ' if row['ok'] else 'BAD'} rc={rc} "
                  f"{row['seconds']} s, {len(error_lines)} non-info line(s), traceback "
                  f"{row['traceback']}: {row['first_error_line']}", flush=True)
    return {"import_floor_s": floor, "limit_s": args.startup_limit, "cases": rows}


# ------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phases", default="fuzz,soak,startup")
    ap.add_argument("--messages", type=int, default=10_000, help="malformed messages (fuzz)")
    ap.add_argument("--unit", type=int, default=20, help="single bad messages per valid pair")
    ap.add_argument("--pace-ms", type=float, default=1.5, help="pause after each bad message")
    ap.add_argument("--answer-timeout", type=float, default=5.0)
    ap.add_argument("--soak-seconds", type=float, default=600.0)
    ap.add_argument("--soak-rate", type=float, default=None,
                    help="pairs/s in the soak (default: 90 %% of the closed-loop rate)")
    ap.add_argument("--visible-only-rate", type=float, default=30.0)
    ap.add_argument("--measure-seconds", type=float, default=20.0)
    ap.add_argument("--startup-timeout", type=float, default=60.0)
    ap.add_argument("--startup-limit", type=float, default=10.0,
                    help="seconds within which a bad start-up must exit")
    ap.add_argument("--out", default="runs/robustness/robustness.json")
    ap.add_argument("--fresh", action="store_true",
                    help="do not keep the other phases' results of an existing --out")
    args = ap.parse_args(argv)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    out = Path(args.out)
    out_dir = out.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    env = L.ros_env()
    from segmif_core.evaluation import write_json_atomic

    ckpt = L.tiny_checkpoint(out_dir / "tiny_checkpoint.pt")
    git = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=L.REPO,
                         capture_output=True, text=True).stdout.strip()
    report = {"command": " ".join([Path(sys.executable).name] + sys.argv), "git": git,
              "host": {"cpus": os.cpu_count(), "load_avg_at_start": os.getloadavg()},
              "ros_domain_id": env["ROS_DOMAIN_ID"], "node_params": node_params(ckpt),
              "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if out.is_file() and not args.fresh:  # keep the phases not run now from an earlier run
        import json

        earlier = json.loads(out.read_text())
        kept = {k: earlier[k] for k in ("fuzz", "fuzz_compressed", "soak", "startup")
                if k in earlier and k.split("_")[0] not in phases}
        if kept:
            report.update(kept)
            report["phases_from_earlier_run"] = {"phases": sorted(kept), "git": earlier.get(
                "git"), "started": earlier.get("started"), "command": earlier.get("command")}
    write = lambda: write_json_atomic(report, out)  # noqa: E731
    if "fuzz" in phases:
        print("fuzz (Image):", flush=True)
        report["fuzz"] = run_fuzz(args, env, ckpt, out_dir)
        write()
        if report["fuzz"].get("compressed_supported"):
            print("fuzz (CompressedImage):", flush=True)
            report["fuzz_compressed"] = run_fuzz(args, env, ckpt, out_dir, "compressed")
        else:
            report["fuzz_compressed"] = {"skipped": "the node declares no input_transport "
                                                    "parameter (no CompressedImage input yet)"}
        write()
    if "soak" in phases:
        print("soak:", flush=True)
        report["soak"] = run_soak(args, env, ckpt, out_dir)
        write()
    if "startup" in phases:
        print("startup:", flush=True)
        report["startup"] = run_startup(args, env, ckpt, out_dir)
    report["host"]["load_avg_at_end"] = os.getloadavg()
    write()
    print_summary(report)
    print(f"written {out}")
    return 0


def print_summary(r: dict) -> None:
    print("\n==== summary ====")
    for key in ("fuzz", "fuzz_compressed"):
        f = r.get(key)
        if not f:
            continue
        if "skipped" in f:
            print(f"{key}: skipped ({f['skipped']})")
            continue
        lg, rss = f.get("log", {}), f.get("rss", {})
        print(f"{key}: {f.get('malformed_messages')} malformed messages in {f.get('seconds')} s,"
              f" node alive {f.get('node_alive')}, valid pairs answered "
              f"{f.get('valid_answered')}/{f.get('valid_pairs')}, categories failed "
              f"{f.get('categories_failed')}")
        print(f"  counters (/diagnostics): {f.get('counters_diagnostics')}")
        print(f"  unaccounted messages: {f.get('messages_unaccounted')}; log "
              f"{lg.get('lines_per_minute')} lines/min ({lg.get('warnings_per_minute')} warnings"
              f"/min, busiest minute {lg.get('busiest_60s_lines')}), tracebacks "
              f"{lg.get('tracebacks')}; RSS {rss.get('start_mb')} -> {rss.get('end_mb')} MB "
              f"(max {rss.get('max_mb')}, {rss.get('growth_pct')} %)")
    s = r.get("soak")
    if s:
        print(f"soak: {s.get('seconds')} s at {s.get('pair_rate_hz')} pairs/s (closed loop "
              f"{s.get('closed_loop_rate_hz')}) + "
              + (f"{s['visible_only_sent']} visible-only images ({s.get('visible_only_sent_hz')}"
                 " Hz)" if "visible_only_sent" in s else
                 f"{s.get('visible_only_rate_hz')} Hz visible-only (requested)") + ":"
              f" answered {s.get('pairs_answered')}/{s.get('pairs_sent')}, RSS "
              f"{s.get('rss_first_mb')} -> {s.get('rss_last_mb')} MB ({s.get('rss_growth_pct')} %),"
              f" latency p50 first minute {s.get('latency_p50_first_minute_ms')} ms, last "
              f"{s.get('latency_p50_last_minute_ms')} ms, alive {s.get('node_alive')}")
    st = r.get("startup") or {}
    if st:
        print(f"startup: import floor {st['import_floor_s']} s, limit {st['limit_s']} s")
    for row in st.get("cases", []):
        print(f"startup {row['case']:28s} rc={row['exit_code']} {row['seconds']} s "
              f"lines={row['non_info_lines']} traceback={row['traceback']} "
              f"{'ok' if row['ok'] else 'BAD'}")


if __name__ == "__main__":
    raise SystemExit(main())
