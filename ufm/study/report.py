"""Text tables of a study's results: mean +- half-width of the 95% interval, rounded to what it shows.

A value is printed to two significant digits of its interval's half-width (``0.97493 +- 0.00341`` ->
``0.9749 +- 0.0034``): more digits would be noise over seeds, fewer would hide the resolution.
"""

from __future__ import annotations

import math

__all__ = ["decimals_for", "format_interval", "format_summary", "format_comparison"]


def decimals_for(half_width: float | None, default: int = 4, most: int = 6) -> int:
    """Decimals that show two significant digits of ``half_width`` (``default`` when it is 0 or None)."""
    if half_width is None or not math.isfinite(half_width) or half_width <= 0:
        return default
    return int(min(most, max(0, 1 - math.floor(math.log10(half_width)))))


def format_interval(mean: float | None, half_width: float | None) -> str:
    """``"0.9749 ± 0.0034"``; ``"0.9749 (n=1)"``-style without an interval; ``"-"`` without a value."""
    if mean is None:
        return "-"
    d = decimals_for(half_width)
    return f"{mean:.{d}f} ± {half_width:.{d}f}" if half_width is not None else f"{mean:.{d}f}"


def _cell(v) -> str:
    return str(v)


def _render(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def format_summary(summary: list[dict], metrics: list[str] | None = None) -> str:
    """The table of :func:`ufm.study.summarise`: one line per grid point, ``mean ± half-width`` per metric."""
    if not summary:
        return "(no complete run)"
    keys = list(summary[0]["params"])
    metrics = metrics or list(summary[0]["metrics"])
    header = [k.rsplit(".", 1)[-1] for k in keys] + ["n"] + metrics
    rows = [[_cell(e["params"][k]) for k in keys] + [str(e["n"])]
            + [format_interval(e["metrics"][m]["mean"], e["metrics"][m]["half_width"]) for m in metrics]
            for e in summary]
    return _render(header, rows)


def _p(p: float | None) -> str:
    return "-" if p is None else (f"{p:.2g}" if p >= 1e-4 else f"{p:.1e}")


def format_comparison(results: list[dict]) -> str:
    """The table of :func:`ufm.study.compare`: B - A with its interval, p-values and seeds each way."""
    if not results:
        return "(nothing to compare)"
    r0 = results[0]
    keys = list(r0["params"])
    title = f"{r0['metric']}: {r0['key']} = {_cell(r0['b'])} minus {_cell(r0['a'])}, paired by seed"
    header = keys + ["n", "mean A", "mean B", "B - A [95% CI]", "paired t p", "Wilcoxon p", "B>A / A>B / ="]
    rows = []
    for r in results:
        d = decimals_for((r["high"] - r["low"]) / 2 if r["high"] is not None else None)
        rows.append([_cell(r["params"][k]) for k in keys] + [
            str(r["n"]), f"{r['mean_a']:.{d}f}", f"{r['mean_b']:.{d}f}",
            f"{r['mean_diff']:+.{d}f} [{r['low']:+.{d}f}, {r['high']:+.{d}f}]",
            _p(r["p_t"]), _p(r["p_wilcoxon"]), f"{r['n_b_higher']} / {r['n_a_higher']} / {r['n_ties']}"])
    notes = [f"note: {r['note']}" for r in results if r.get("note")]
    return "\n".join([title, _render(header, rows), *notes])
