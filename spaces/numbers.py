"""How paretune writes a hypervolume for people: the same 4 significant digits in the CLI, the
progress lines, the reports and the dashboard (41,890 and 0.4172, never 4.189e+04)."""

from __future__ import annotations

import math


def format_hypervolume(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    if value == 0:
        return "0"
    if abs(value) < 1000:
        return f"{value:.4g}"
    digits = int(math.floor(math.log10(abs(value))))
    return f"{round(value, 3 - digits):,.0f}"
