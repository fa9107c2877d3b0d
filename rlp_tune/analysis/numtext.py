"""Numbers as the analysis writes them: accuracies as %, other values to 3 significant digits, an
estimate with its 95% CI; None or NaN as —.

    pct(0.1234) == "12.3%";  num(1234.5) == "1.23e+03";  with_ci(0.5, [0.4, 0.6], pct) == "50.0% [95% CI 40.0%, 60.0%]"
"""
from __future__ import annotations


def pct(v) -> str:
    return "—" if v is None or v != v else f"{100 * v:.1f}%"      # None or NaN → —


def num(v) -> str:
    return "—" if v is None or v != v else f"{v:.3g}"


def with_ci(v, ci, fmt=num) -> str:
    return fmt(v) + (f" [95% CI {fmt(ci[0])}, {fmt(ci[1])}]" if ci else " [no CI]")
