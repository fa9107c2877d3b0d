"""Verdict rules and the Markdown table of the reproduction (analysis/reproduce.py writes docs/reproduction.md).

    m = Measurement(value=-0.031, ci=(-0.05, -0.012), unit="points", seeds=[0, 1], n_trials=16)
    verdict(m, Rule("below", 0.0))            # → Verdict("reproduced", "rule CI < +0.0 pts: met")
    verdict(m, Rule("below", 0.0), checks)    # → "not in regime" when a regime check failed
    print(table_markdown([Row(claim, m, verdict(m, claim.rule, checks), checks)]))

Pure functions on numbers (no sweeps, no files): the verdict of every row is computed here from the
measured value and its 95% CI by the claim's stated rule, never written by hand.

Rules (`Rule.kind`), applied to the 95% CI [lo, hi] of the measured quantity:
  above t    reproduced when lo > t           (an effect in the claimed direction)
  below t    reproduced when hi < t
  within a b reproduced when a ≤ lo and hi ≤ b (e.g. "at chance": within ±2 points of 1/n)
Anything else is "not reproduced at this scale". A claim whose quantity could not be measured
(no trials, a fit not identified, no CI: fewer than 20 finite bootstrap values) is "not testable
here", with the reason; so is a claim the CPU setups cannot express (Measurement.untestable).
Before the rule, the claim's regime checks (rlp_tune.analysis.regime.Check, measured on the same
trials: λ = 0 fits its labels, memorizes, the class head trains, the λ range brackets the optimum,
the memorization transition is inside it): when one failed the row is "not in regime", naming the
failed check and its measured value; the rule's outcome would say nothing about the paper's claim.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

REPRODUCED, NOT_REPRODUCED, NOT_TESTABLE = "reproduced", "not reproduced at this scale", "not testable here"
NOT_IN_REGIME = "not in regime"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, NOT_IN_REGIME, NOT_TESTABLE)
RULE_KINDS = ("above", "below", "within")


@dataclass(frozen=True)
class Rule:
    """A verdict rule on the 95% CI of the measured quantity (module docstring)."""
    kind: str
    a: float
    b: float | None = None            # upper bound of `within`

    def __post_init__(self):
        if self.kind not in RULE_KINDS:
            raise ValueError(f"rule kind {self.kind!r}: expected one of {', '.join(RULE_KINDS)}")
        if (self.kind == "within") != (self.b is not None):
            raise ValueError(f"rule {self.kind!r}: `b` is required for 'within' and only there")

    def text(self, unit: str = "") -> str:
        f = lambda x: fmt_number(x, unit, signed=unit == "points")   # noqa: E731
        if self.kind == "above":
            return f"CI > {f(self.a)}"
        if self.kind == "below":
            return f"CI < {f(self.a)}"
        return f"CI within [{f(self.a)}, {f(self.b)}]"


@dataclass
class Measurement:
    """One measured quantity: its value, 95% CI, the trials it came from; or why it was not measured."""
    value: float | None = None
    ci: tuple[float, float] | None = None
    unit: str = "points"              # "points" (fractions shown ×100), "rho", "" (plain)
    seeds: list[int] = field(default_factory=list)
    n_trials: int = 0
    detail: str = ""                  # what was compared, e.g. "λ=0: 19.0% vs λ=100: 12.4%"
    untestable: str | None = None     # a reason: the claim cannot be measured here


@dataclass(frozen=True)
class Verdict:
    label: str
    why: str


def verdict(m: Measurement, rule: Rule, checks=()) -> Verdict:
    """The row's verdict from the numbers and the regime checks (module docstring)."""
    if m.untestable:
        return Verdict(NOT_TESTABLE, m.untestable)
    if m.value is None or not math.isfinite(m.value):
        return Verdict(NOT_TESTABLE, "no value measured")
    failed = [c for c in checks if not c.passed]
    if failed:
        return Verdict(NOT_IN_REGIME, "failed: " + "; ".join(c.text for c in failed))
    if m.ci is None:
        return Verdict(NOT_TESTABLE, "no 95% CI (too few trials)")
    lo, hi = m.ci
    ok = {"above": lo > rule.a, "below": hi < rule.a,
          "within": rule.b is not None and rule.a <= lo and hi <= rule.b}[rule.kind]
    return Verdict(REPRODUCED if ok else NOT_REPRODUCED, f"rule {rule.text(m.unit)}: {'met' if ok else 'not met'}")


def fmt_number(x: float | None, unit: str = "points", signed: bool = False) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    if unit == "points":
        return f"{100 * x:+.1f} pts" if signed else f"{100 * x:.1f}%"
    if unit == "rho":
        return f"{x:+.2f}"
    return f"{x:.3g}"


def fmt_measure(m: Measurement, signed: bool = True) -> str:
    """'+3.1 pts [+1.2, +5.0]'; '+0.81 [+0.55, +0.95]' (a ρ); '–' when nothing was measured."""
    if m.untestable or m.value is None:
        return "–"
    v = fmt_number(m.value, m.unit, signed)
    if m.ci is None:
        return f"{v} (no CI)"
    lo, hi = (fmt_number(c, m.unit, signed).replace(" pts", "") for c in m.ci)
    return f"{v} [{lo}, {hi}]"


@dataclass(frozen=True)
class Claim:
    """One qualitative claim of a paper, where it is tested, and the rule that decides it."""
    key: str                          # short id, e.g. "001-5.3-suppress"
    paper: str                        # "001 §5.3"
    text: str                         # the claim in words
    quantity: str                     # what is measured, e.g. "rand_acc_eval(λ=100) − 1/n"
    rule: Rule
    sweep: str = ""                   # the space whose trials test it (search_spaces/cpu/<sweep>.toml)
    regime: tuple[str, ...] = ()      # the regime checks it needs (rlp_tune.analysis.regime names)
    regime_where: str = ""            # the trials they are measured on: a pandas query on the sweep's trials
    regime_sweep: str = ""            # those trials' sweep when not `sweep` (e.g. the probed MASC runs)


@dataclass
class Row:
    claim: Claim
    setting: str
    measurement: Measurement
    verdict: Verdict
    checks: list = field(default_factory=list)     # regime.Check, as measured for this row


def _cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def table_markdown(rows: list[Row]) -> str:
    """The reproduction table: claim, paper, setting, measured value with CI, regime checks, seeds, verdict."""
    out = ["| claim | paper | setting (sweep) | measured: quantity = value [95% CI] | regime checks | seeds (trials) "
           "| verdict |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        m, c = r.measurement, r.claim
        measured = f"{c.quantity} = {fmt_measure(m)}" + (f"; {m.detail}" if m.detail else "")
        regime = "<br>".join(ch.short() for ch in r.checks) or "–"
        seeds = f"{', '.join(map(str, sorted(set(m.seeds))))} ({m.n_trials})" if m.n_trials else "–"
        v = f"**{r.verdict.label}** ({r.verdict.why})"
        out.append("| " + " | ".join(_cell(s) for s in (c.text, c.paper, r.setting, measured, regime, seeds, v))
                   + " |")
    return "\n".join(out) + "\n"


def summary_counts(rows: list[Row]) -> dict[str, int]:
    counts = dict.fromkeys(VERDICTS, 0)
    for r in rows:
        counts[r.verdict.label] += 1
    return counts
