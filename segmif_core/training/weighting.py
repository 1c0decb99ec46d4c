"""Task weights of the joint loss, Eq. (7): L = lambda_fusion L_f + lambda_seg L_s.

Dynamic weighting, Liu et al., ICCV 2023, Sec. 3.4, Eqs. (8)-(9) (a variant of dynamic weight
averaging, Liu, Johns & Davison, CVPR 2019):

    r_i(n-1)   = L_i(n-1) / L_i(n-2)                                          (8)
    lambda_i(n) = eta_i * exp(r_i(n-1) / T) / sum_k exp(r_k(n-1) / T)          (9)

eta_i is the task preference and T a temperature. ``n`` counts *windows* of ``window`` training
steps: L_i(n) is the mean loss of task i over window n (window = 1 uses single steps, which is
noisy). Until two windows are complete r_i = 1, so lambda_i = eta_i / K. The authors' code uses
T = 1000, eta = 0.4 (fusion) and 0.8 (segmentation), which keeps the weights almost constant
(about eta_i / 2). ``StaticWeights`` returns fixed weights, for comparison.
"""
from __future__ import annotations

import math

TASKS = ("fusion", "seg")


class StaticWeights:
    """Fixed lambdas, e.g. {'fusion': 1.0, 'seg': 1.0}."""

    def __init__(self, weights: dict):
        self.weights = {t: float(weights[t]) for t in TASKS}

    def current(self) -> dict:
        return dict(self.weights)

    def update(self, losses: dict) -> None:  # noqa: ARG002 - same interface as DynamicWeights
        return None

    def state_dict(self) -> dict:
        return {"weights": dict(self.weights)}

    def load_state_dict(self, state: dict) -> None:
        self.weights = dict(state["weights"])


class DynamicWeights:
    """Eqs. (8)-(9) over windows of ``window`` steps.

    Args:
        eta: task preferences {'fusion': eta_f, 'seg': eta_s} (> 0).
        temperature: T > 0.
        window: steps averaged into one L_i(n) (>= 1).
    Raises:
        ValueError: non-positive eta, T or window.
    """

    def __init__(self, eta: dict, temperature: float = 1000.0, window: int = 1):
        if temperature <= 0 or window < 1 or any(eta[t] <= 0 for t in TASKS):
            raise ValueError("eta values and temperature must be > 0 and window >= 1")
        self.eta = {t: float(eta[t]) for t in TASKS}
        self.temperature = float(temperature)
        self.window = int(window)
        self.history: list[dict] = []        # completed windows' mean losses, newest last
        self._sum = {t: 0.0 for t in TASKS}
        self._count = 0

    def ratios(self) -> dict:
        """r_i(n-1) of Eq. (8); 1 for every task until two windows are complete."""
        if len(self.history) < 2:
            return {t: 1.0 for t in TASKS}
        prev, prev2 = self.history[-1], self.history[-2]
        return {t: prev[t] / prev2[t] if prev2[t] > 0 else 1.0 for t in TASKS}

    def current(self) -> dict:
        """lambda_i(n) of Eq. (9)."""
        r = self.ratios()
        # subtract the max exponent for numerical safety (the ratio is unchanged)
        m = max(r[t] / self.temperature for t in TASKS)
        e = {t: math.exp(r[t] / self.temperature - m) for t in TASKS}
        total = sum(e.values())
        return {t: self.eta[t] * e[t] / total for t in TASKS}

    def update(self, losses: dict) -> None:
        """Add one step's task losses (floats); closes a window every ``window`` steps."""
        for t in TASKS:
            self._sum[t] += float(losses[t])
        self._count += 1
        if self._count == self.window:
            self.history.append({t: self._sum[t] / self._count for t in TASKS})
            self.history = self.history[-2:]
            self._sum = {t: 0.0 for t in TASKS}
            self._count = 0

    def state_dict(self) -> dict:
        return {"history": [dict(h) for h in self.history], "sum": dict(self._sum),
                "count": self._count}

    def load_state_dict(self, state: dict) -> None:
        self.history = [dict(h) for h in state["history"]]
        self._sum = dict(state["sum"])
        self._count = int(state["count"])


def make_weighting(cfg: dict):
    """From the config section ``train.weighting``: mode 'dynamic' (eta_fusion, eta_seg,
    temperature, window) or 'static' (lambda_fusion, lambda_seg)."""
    mode = cfg.get("mode", "dynamic")
    if mode == "dynamic":
        return DynamicWeights({"fusion": cfg["eta_fusion"], "seg": cfg["eta_seg"]},
                              cfg["temperature"], cfg.get("window", 1))
    if mode == "static":
        return StaticWeights({"fusion": cfg["lambda_fusion"], "seg": cfg["lambda_seg"]})
    raise ValueError(f"unknown weighting mode {mode!r} (dynamic or static)")
