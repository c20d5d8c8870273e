"""A report's tables: per metric the rows (n, mean, sd, CI, the test against the best, its
power), as markdown for report.md and as a narrow rich table for the terminal."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from nnlab.report.ranking import WEAK_N, WIDTH, Comparison, Verdict
from nnlab.report.stats import POWER
from nnlab.tracking import tags


def power_cells(c: Comparison | None) -> list[str]:
    """The comparison's smallest detectable difference and the seeds its difference needs."""
    if c is None or math.isnan(c.detectable):
        return ["", ""]
    needed = "-" if c.seeds_needed is None else str(c.seeds_needed)
    return [f"{c.detectable:.4f}", needed]


def rows(verdict: Verdict) -> list[list[str]]:
    """A metric's table rows: option, n, mean, sd, 95% CI, diff vs best [CI], d, p (Holm), test,
    the smallest difference detectable at 80% power, the seeds the difference would need."""
    out = []
    for g in verdict.ranked:
        s = g.summary(verdict.metric)
        sd = f"{s.sd:.4f}" if s.sd is not None else "n<2"
        ci = f"[{s.ci[0]:.4f}, {s.ci[1]:.4f}]" if s.ci else "-"
        c = verdict.comparisons.get(id(g))
        if g is verdict.best:
            tail = ["(best)", "", "", ""]
        elif c is None:
            tail = ["untested", "", "", ""]
        else:
            diff_ci = "" if math.isnan(c.ci[0]) else f" [{c.ci[0]:+.4f}, {c.ci[1]:+.4f}]"
            d = "" if math.isnan(c.d) else f"{c.d:.2f}"
            p = "-" if math.isnan(c.p_holm) else f"{c.p_holm:.3g}" + ("*" if c.significant else "")
            tail = [f"{c.diff:+.4f}{diff_ci}", d, p, c.test]
        out.append([g.label, str(s.n), f"{s.mean:.4f}", sd, ci, *tail, *power_cells(c)])
    return out


HEADER = ["option", "n", "mean", "sd", "95% CI", "diff vs best [95% CI]", "d", "p (Holm)",
          "test", "detectable at 80%", "seeds needed"]
TERMINAL = ("option", "n", "mean", "sd", "diff vs best", "p (Holm)", "detect.", "seeds")


def terminal_rows(verdict: Verdict) -> list[list[str]]:
    """The table's narrow cut for a 100-column terminal (the CIs and tests stay in report.md)."""
    out = []
    for row in rows(verdict):
        diff = row[5].split(" [")[0]
        out.append([row[0], row[1], row[2], row[3], diff, row[7], row[9], row[10]])
    return out


def print_tables(experiment: str, found: Sequence[Verdict], runs: Sequence[Any] = ()) -> None:
    """Per metric a narrow table (options as rows) and at most three lines of verdict, all in
    WIDTH columns; where the seeds are too few, the command that adds them."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=WIDTH)
    for verdict in found:
        table = Table(title=f"{experiment}: {verdict.metric} (final value, over seeds)")
        for i, name in enumerate(TERMINAL):
            table.add_column(name, justify="left" if i == 0 else "right", overflow="fold")
        for row in terminal_rows(verdict):
            table.add_row(*row)
        console.print(table)
        for line in verdict.lines():
            console.print(line, soft_wrap=True, highlight=False, markup=False)
        console.print()
    if runs and any(line.startswith("no verdict") for v in found for line in v.lines()):
        console.print("no verdict; run more seeds. This adds them (finished runs are skipped):",
                      highlight=False)
        for line in wrapped(add_seeds_command(runs)):
            console.print(line, soft_wrap=True, highlight=False, markup=False)
        console.print()
    console.print(f"detect.: the smallest difference a t test finds at {POWER:.0%} power with "
                  "these seeds; seeds: per", highlight=False)
    console.print("option, what the observed difference would need (both at 0.05 / the "
                  "comparisons of the metric)", highlight=False)


def markdown_table(verdict: Verdict) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row) + " |" for row in rows(verdict)]
    return "\n".join(lines)


def add_seeds_command(runs: Sequence[Any], seeds: int = WEAK_N) -> str:
    """The multirun that brings each option to `seeds` seeds, rebuilt from the runs' overrides;
    `sweep.resume=true` skips the runs that already finished."""
    import shlex

    values: dict[str, list[str]] = {}
    for run in sorted(runs, key=lambda r: getattr(r.info, "start_time", 0) or 0):  # sweep order
        for word in shlex.split(run.data.tags.get(tags.OVERRIDES, "")):
            key, _, value = word.partition("=")
            if key in ("seed", "sweep.resume") or key.startswith(("hydra", "+hydra")):
                continue
            values.setdefault(key, [])
            if value not in values[key]:
                values[key].append(value)
    have = {int(run.data.params.get("seed", 0)) for run in runs}
    seed_list = sorted(have)
    candidate = 0
    while len(seed_list) < max(seeds, len(have)):
        if candidate not in have:
            seed_list.append(candidate)
        candidate += 1
    words = ["python", "-m", "nnlab", "-m", *(f"{k}={','.join(v)}" for k, v in values.items()),
             "seed=" + ",".join(map(str, sorted(seed_list))), "sweep.resume=true"]
    return " ".join(shlex.quote(w) if any(ch in w for ch in " '\"()") else w for w in words)


def wrapped(command: str, width: int = WIDTH) -> list[str]:
    """A shell command over lines of at most `width` columns, joined by backslashes."""
    lines, line = [], ""
    for word in command.split(" "):
        if line and len(line) + 1 + len(word) > width - 2:
            lines.append(line + " \\")
            line = "    " + word
        else:
            line = f"{line} {word}" if line else word
    return [*lines, line]
