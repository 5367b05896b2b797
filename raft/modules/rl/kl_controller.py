"""KL penalty coefficients: fixed, or adapted towards a target KL (Ziegler et al. 2019, section 2.2)."""

from __future__ import annotations


class FixedKLController:
    def __init__(self, coef: float):
        if coef < 0:
            raise ValueError(f"module.kl_coef must be >= 0, got {coef}")
        self.value = float(coef)

    def update(self, current_kl: float, n_steps: int) -> float:
        return self.value

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = float(state["value"])


class AdaptiveKLController(FixedKLController):
    """beta <- beta * (1 + clip(KL / target - 1, -0.2, 0.2) * n_steps / horizon).

    The clipped proportional error keeps one noisy KL estimate from moving beta by more than
    0.2 * n_steps / horizon in relative terms.
    """

    def __init__(self, init_coef: float, target: float, horizon: int):
        super().__init__(init_coef)
        if target <= 0:
            raise ValueError(f"module.kl_target must be > 0, got {target}")
        if horizon <= 0:
            raise ValueError(f"module.kl_horizon must be > 0, got {horizon}")
        self.target = float(target)
        self.horizon = int(horizon)

    def update(self, current_kl: float, n_steps: int) -> float:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value
