"""The collapse guard: thresholds on the health metrics, held for a window of checks.

A check is the health metrics of one batch (:mod:`ssl_core.monitors.health_metrics`) for each
watched module (the encoder, the method's projections). Each check gets a level per module:

====== ========================================================== =============================
level  condition (``std`` is ``feature_std_ratio`` = std·√d)       meaning
====== ========================================================== =============================
2      ``std < 0.05`` and ``uniform > -0.01``                     complete collapse: one vector
2      ``rankme < 2`` (checks of at least 32 samples)             dimensional collapse: ≤ 2 axes
1      ``std < 0.2``                                              collapsing toward a constant
1      ``rankme < 0.2 x`` the first check's (same N, ≥ 32)        most dimensions lost
0      otherwise                                                  healthy
====== ========================================================== =============================

Non-finite features are level 2. A module is *in alarm* at level L when its last
:data:`WINDOW` checks all reached L, after the first :data:`WINDOW` checks of the run (the
warm-up: learning-rate warm-up transients and BatchNorm statistics settling). The guard warns
at level 1 and 2; with ``trainer.collapse=stop`` it fails the run at level 2.

Why these numbers (measured on ResNet-18 features of the digits at 32 px, N = 64, and on
synthetic features; docs/plugins.md "Representation health" has the table): at
initialization, in training mode, std·√d is 0.35-0.83, uniformity -0.5 to -2.7 and RankMe 21
or more; healthy training keeps std·√d ≥ 0.62, uniformity ≤ -0.9 and RankMe ≥ 9 (0.28 x its
first value or more). Collapsed objectives (no stop-gradient, no predictor) take the
projection's std·√d below 0.2 within ~30 steps and below 0.05 (uniformity > -0.01) within
~300; rank-1 features have RankMe 1 whatever their spread (std·√d stays ≈ 0.8 there, which is
why RankMe is needed). Level 1 is the early warning, level 2 the state a run does not come back
from, and the only one that stops a run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: Consecutive checks that must all cross a threshold; also the warm-up, in checks.
WINDOW = 5
#: std·√d below which features are collapsing toward a constant (level 1).
STD_LOW = 0.2
#: std·√d below which (with uniformity above :data:`UNIFORM_COLLAPSED`) they are one vector.
STD_COLLAPSED = 0.05
UNIFORM_COLLAPSED = -0.01
#: RankMe below which the features span at most two directions (level 2).
RANK_COLLAPSED = 2.0
#: RankMe below this share of the run's first check (same N) is level 1.
RANK_DROP = 0.2
#: Checks with fewer samples skip the RankMe rules (RankMe grows with N; small N is noisy).
MIN_RANK_SAMPLES = 32

CAUSES = (
    "usual causes: learning rate too high or warm-up too short (optim.lr, "
    "optim.warmup_epochs); a target network following the online one too fast (EMA momentum "
    "τ too low); a predictor missing or trained too slowly (predictor learning rate); a batch "
    "too small for BatchNorm or for the negatives; weight decay off or too strong"
)


@dataclass
class Verdict:
    """One module's level at one check, and why."""

    level: int
    reason: str = ""


def judge(values: dict[str, float], samples: int, first_rank: float | None) -> Verdict:
    """The level of one module's check (see the module docstring for the rules)."""
    std, uniform, rank = values["feature_std_ratio"], values["uniform"], values["rankme"]
    width = f"std·√d {std:.3f} (1 = isotropic)"
    if not all(math.isfinite(v) for v in values.values()):
        return Verdict(2, "features are not finite")
    if std < STD_COLLAPSED and uniform > UNIFORM_COLLAPSED:
        return Verdict(2, f"features collapsed to one vector: {width}, uniformity {uniform:.3f}")
    ranked = samples >= MIN_RANK_SAMPLES
    if ranked and rank < RANK_COLLAPSED:
        return Verdict(
            2,
            f"features collapsed to {rank:.2f} effective dimensions (RankMe of {samples} "
            f"samples, < {RANK_COLLAPSED:g}); {width}",
        )
    if std < STD_LOW:
        return Verdict(1, f"features are collapsing toward one vector: {width} < {STD_LOW:g}")
    if ranked and first_rank is not None and rank < RANK_DROP * first_rank:
        return Verdict(
            1,
            f"features lost most of their dimensions: RankMe {rank:.1f}, {first_rank:.1f} at "
            f"the first check (< {RANK_DROP:g}x)",
        )
    return Verdict(0)


@dataclass
class ModuleState:
    """What the guard remembers of one watched module."""

    first_rank: float | None = None
    first_samples: int = 0
    levels: list[int] = field(default_factory=list)  # the last WINDOW checks' levels
    steps: list[int] = field(default_factory=list)
    reason: str = ""


@dataclass
class Alarm:
    """The guard's state after a check: ``level`` 0 (healthy), 1 (warning), 2 (collapse)."""

    level: int
    module: str = ""
    since: int = 0
    reason: str = ""


class CollapseGuard:
    """Keeps the recent levels of every watched module and says when an alarm starts or ends."""

    def __init__(self) -> None:
        self.modules: dict[str, ModuleState] = {}
        self.checks = 0
        self.alarm = Alarm(0)

    @property
    def suspect(self) -> bool:
        """Whether the latest check was unhealthy for some module (an alarm may be building)."""
        return any(state.levels and state.levels[-1] > 0 for state in self.modules.values())

    def observe(self, step: int, checks: dict[str, tuple[dict[str, float], int]]) -> Alarm:
        """Record one check (``{module: (metrics, samples)}``) at ``step``; the new alarm."""
        self.checks += 1
        for name, (values, samples) in checks.items():
            state = self.modules.setdefault(name, ModuleState())
            rank = values.get("rankme", math.nan)
            if state.first_rank is None and samples >= MIN_RANK_SAMPLES and math.isfinite(rank):
                state.first_rank, state.first_samples = rank, samples
            first = state.first_rank if samples == state.first_samples else None
            verdict = judge(values, samples, first)
            state.levels = [*state.levels, verdict.level][-WINDOW:]
            state.steps = [*state.steps, step][-WINDOW:]
            if verdict.level:
                state.reason = verdict.reason
        self.alarm = self._alarm()
        return self.alarm

    def _alarm(self) -> Alarm:
        if self.checks <= WINDOW:
            return Alarm(0)
        worst = Alarm(0)
        for name, state in self.modules.items():
            if len(state.levels) < WINDOW:
                continue
            level = min(state.levels)
            if level > worst.level:
                worst = Alarm(level, name, self._since(name, state), state.reason)
        return worst

    def _since(self, name: str, state: ModuleState) -> int:
        """The step of the first check of the module's current unhealthy streak."""
        previous = self.alarm
        if previous.level and previous.module == name:
            return previous.since
        return state.steps[0]


def describe(alarm: Alarm, step: int, checks: int) -> str:
    """One line: what collapsed, since when, how sure, what usually causes it."""
    what = "representation collapse" if alarm.level >= 2 else "representation collapse suspected"
    return (
        f"{what} at step {step}, since step {alarm.since} ({checks} checks in a row): "
        f"{alarm.module} {alarm.reason}; {CAUSES}"
    )
