"""``reports/REPRODUCTION.md`` from the output of ``landscape reproduce``: for each
figure the command, scale, seeds and machine, every claim's statistic, numbers and
verdict, and the paper's own reading beside it. Nothing is typed by hand: the page
is a function of the figures' ``figure.json`` and ``claims.json``.

Several output directories may be given (a CPU-scale one from this machine, a
paper-scale one from a GPU): a figure found in more than one appears once per
directory, each row marked with where it comes from.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from landscape.report.claims import ACCURACY_MARGIN, MIN_FRACTION, RATIO


def _number(value: Any) -> str:
    if isinstance(value, (int, float)):
        return "nan" if math.isnan(value) else "inf" if math.isinf(value) else f"{value:.3g}"
    return str(value)


def _minutes(seconds: float | None) -> str:
    return "time unknown" if seconds is None else f"{seconds / 60:.1f} min"


def _seeds(figure: dict[str, Any]) -> str:
    n = len(figure.get("seeds", [0]))
    return f"{n} seed{'s' if n > 1 else ''}"


def _anchor(figure: dict[str, Any]) -> str:
    return f"{figure.get('figure')}-{figure.get('scale')}-{len(figure.get('seeds', [0]))}seeds"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def load_figures(out_dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Every figure written under the given ``landscape reproduce`` output directories,
    in the paper's order (figures without claims.json, i.e. not finished, are left out)."""
    from landscape.reproduce import FIGURES

    order = {name: i for i, name in enumerate(FIGURES)}
    found = []
    for out in out_dirs:
        for meta_path in sorted(Path(out).glob("*/figure.json")):
            claims_path = meta_path.parent / "claims.json"
            if not claims_path.is_file():
                continue
            meta = json.loads(meta_path.read_text())
            meta["claims"] = json.loads(claims_path.read_text())
            meta["dir"] = str(meta_path.parent)
            meta["seconds"] = train_seconds(out, meta.get("experiments", []))
            found.append(meta)
    return sorted(found, key=lambda m: (order.get(m.get("figure"), len(order)), m.get("scale", "")))


def train_seconds(out_dir: str | Path, experiments: Sequence[str]) -> float | None:
    """Wall time of the experiments' runs (first record to last, summed over runs;
    None when a run cannot be read). Reads each run's metadata only."""
    from landscape.runs import RunStore, StoreError, find_runs

    total = 0.0
    try:
        for path in find_runs([Path(out_dir) / key for key in experiments]):
            with RunStore(path, readonly=True) as store:
                meta = store.meta
            created, updated = meta.get("created"), meta.get("updated")
            if not isinstance(created, (int, float)) or not isinstance(updated, (int, float)):
                return None
            total += updated - created
    except StoreError:
        return None
    return total


def markdown(out_dirs: Sequence[str | Path], title: str = "Reproduction of Santurkar et al. (2018)") -> str:
    """The whole page."""
    figures = load_figures(out_dirs)
    lines = [
        f"# {title}",
        "",
        "Written by `python scripts/reproduction.py " + " ".join(str(d) for d in out_dirs) + "` from the "
        "`figure.json` and `claims.json` that `landscape reproduce` leaves in each figure's directory; do not edit "
        "by hand.",
        "",
        f"Verdicts (README, 'Claims and verdicts'): a ratio supports a claim at >= {RATIO} in its direction and "
        f"contradicts it at <= 1/{RATIO}; accuracy differences count from {ACCURACY_MARGIN:.0%}; runs shorter than "
        f"{MIN_FRACTION:.0%} of the paper's steps are inconclusive whatever their numbers; with several seeds a "
        "verdict needs every seed to agree. The CPU scale is VGG-11 at an eighth of its width for a quarter of "
        "the paper's steps (see `landscape reproduce --list` and `landscape/reproduce.py`): a finding at that "
        "scale is about that network, not the paper's VGG-16. The runs and the reports named below live in the "
        "output directories (not kept in git); the command of each figure makes them again.",
        "",
        *([] if any(f.get("scale") == "paper" for f in figures) else [
            "No figure at paper scale in these directories: it needs a GPU (`bench/gpu_check.sh` runs Fig. 4, 9, 10 "
            "and 13 at paper scale when a device is lent, and its output directory can be added to the command "
            "above).", ""]),
        "## Summary",
        "",
        "| figure | scale | seeds | where | supports | contradicts | inconclusive |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        counts = {v: sum(c.get("verdict") == v for c in f["claims"]) for v in ("supports", "contradicts",
                                                                              "inconclusive")}
        lines.append(f"| [{f.get('label')}](#{_anchor(f)}) {_cell(f.get('title', ''))} | "
                     f"{f.get('scale')} | {len(f.get('seeds', [0]))} | {_cell(f.get('where', '?'))} | "
                     f"{counts['supports']} | {counts['contradicts']} | {counts['inconclusive']} |")
    for f in figures:
        lines += [
            "",
            f'<a id="{_anchor(f)}"></a>',
            f"## {f.get('label')}: {f.get('title')} ({f.get('scale')} scale, {_seeds(f)})",
            "",
            f"- Command: `{f.get('command')}`",
            f"- Seeds: {', '.join(map(str, f.get('seeds', [0])))}; machine: {f.get('where', '?')}",
            f"- Experiments: {', '.join(f.get('experiments', []))} ({_minutes(f.get('seconds'))} of training and "
            f"measurement, shared experiments counted in every figure that reads them); report: "
            f"`{f['dir']}/report.html`",
            f"- The paper: {f.get('reading')}",
            "",
        ]
        if not f["claims"]:
            lines.append("No claim applies to the runs found.")
            continue
        lines += ["| claim | statistic | numbers | verdict |", "|---|---|---|---|"]
        for c in f["claims"]:
            numbers = ", ".join(f"{k} {_number(v)}" for k, v in c.get("values", {}).items())
            verdict = f"**{c.get('verdict')}**" + (f" ({c['reason']})" if c.get("reason") else "")
            lines.append(f"| {_cell(c.get('claim'))} | {_cell(c.get('statistic'))} | {_cell(numbers)} | "
                         f"{_cell(verdict)} |")
    return "\n".join(lines) + "\n"


__all__ = ["load_figures", "markdown"]
