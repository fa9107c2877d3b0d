"""Short text forms of numbers for the sweep's tables and progress lines (`rlp-tune status`, the
best-trials table printed when a sweep ends, the live progress line).

    fmt_value(0.123456) == "0.1235";  fmt_value(None) == "-";  fmt_duration(3725) == "1h02m"
"""
from __future__ import annotations

import math


def fmt_value(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def fmt_duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")
