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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from landscape.paper.catalogue import ACCURACY, CORRELATED, COSINE, MIN_POINTS, RATIO, UNCORRELATED
from landscape.report.verdicts import estimate_text, scale_label


def _minutes(seconds: float | None) -> str:
    return "time unknown" if seconds is None else f"{seconds / 60:.1f} min"


def _seeds(figure: dict[str, Any]) -> str:
    n = len(figure.get("seeds", [0]))
    return f"{n} seed{'s' if n > 1 else ''}"


def _scale_text(figure: dict[str, Any]) -> str:
    """The figure's scale as its rows read: ``paper protocol`` when every claim's runs
    followed it (the DLN's CPU scale is its protocol), else the command's scale
    (``cpu``: the reduction)."""
    scales = [c.get("scale") for c in figure.get("claims", [])]
    if scales and all(isinstance(x, dict) and x.get("protocol") for x in scales):
        return "paper protocol"
    return str(figure.get("scale"))


def _anchor(figure: dict[str, Any]) -> str:
    network = f"-{figure['network']}" if figure.get("network") else ""
    return f"{figure.get('figure')}{network}-{figure.get('scale')}-{len(figure.get('seeds', [0]))}seeds"


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def load_figures(out_dirs: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Every figure written under the given ``landscape reproduce`` output directories,
    in the paper's order (figures without claims.json, i.e. not finished, are left out)."""
    from landscape.paper.reproduce import FIGURES

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


def _verdict_cell(c: dict[str, Any]) -> str:
    return f"**{c.get('verdict')}**" + (f" ({c['reason']})" if c.get("reason") else "")


def _claim_cell(c: dict[str, Any]) -> str:
    label = f"{c.get('figure')}({c['panel']})" if c.get("panel") else str(c.get("figure", ""))
    quote = f'<br>*the paper ({c.get("quote_source")}): "{c["quote"]}"*' if c.get("quote") else ""
    return f"{label}: {c.get('claim')}{quote}"


def _scale_cell(c: dict[str, Any]) -> str:
    scale = scale_label(c["scale"]) if c.get("scale") else "scale not recorded"
    seeds = c.get("seeds")
    if not seeds:
        return scale
    return f"{scale}; seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def _claims_rows(claims: Sequence[dict[str, Any]], counted_in: dict[str, str], label: str) -> list[str]:
    """A figure's table; ``counted_in``: claim id -> the figure whose summary counts it."""
    lines = ["| claim | statistic | estimate [95% interval] (half-width) | verdict | scale |", "|---|---|---|---|---|"]
    for c in claims:
        owner = counted_in.get(str(c.get("id")), label)
        note = f" (counted under {owner})" if owner != label else ""
        lines.append(
            f"| {_cell(_claim_cell(c))} | {_cell(c.get('statistic'))} | {_cell(estimate_text(c))} | "
            f"{_cell(_verdict_cell(c) + note)} | {_cell(_scale_cell(c))} |"
        )
    return lines


def markdown(
    out_dirs: Sequence[str | Path],
    title: str = "Reproduction of Santurkar et al. (2018)",
    notes: str | Path | None = None,
) -> str:
    """The whole page: a summary that counts each of the paper's claims once, a
    section per figure, and the observations beyond the paper apart. ``notes``: a
    markdown file (kept in git beside the page) printed below the summary under
    "What changed", for what the figure folders cannot say (how this page's verdicts
    differ from the previous one's, and why)."""
    figures = load_figures(out_dirs)
    notes_flag = f" --notes {notes}" if notes is not None else ""
    lines = [
        f"# {title}",
        "",
        (
            "Written by `python scripts/reproduction.py " + " ".join(str(d) for d in out_dirs) + notes_flag + "` from "
            "the `figure.json` and `claims.json` that `landscape reproduce` leaves in each figure's directory; do not "
            "edit by hand."
        ),
        "",
        (
            "Each claim is one of the paper's own (its words quoted), measured as the paper plots it and judged "
            "from a 95% interval (README, 'Claims and verdicts'): a ratio supports when its whole interval lies "
            f"beyond {RATIO} in the claimed direction and contradicts when it lies wholly beyond it the other way; "
            f"accuracy differences count beyond {ACCURACY * 100:g} points; Fig. 3's cosine beyond {COSINE}, and "
            f"for the DLN median |cos| <= {UNCORRELATED} with BN against cos >= {CORRELATED} without. One seed: a "
            "stationary bootstrap over the steps (within the run: seed variance not included); several seeds: a "
            f"t-interval over the seeds (geometric mean for ratios). Fewer than {MIN_POINTS} paired measurements, or "
            "an unfinished run, give no verdict. Every row names its scale: a finding at a reduced scale is about "
            "that network, not the paper's VGG-16. The runs and reports named below live in the output directories "
            "(not kept in git); each figure's command makes them again."
        ),
        "",
        *(
            []
            if any(f.get("scale") == "paper" for f in figures)
            else [
                (
                    "No VGG figure at the paper's scale in these directories: VGG-16 for 15k steps needs a GPU "
                    "(`bench/gpu_check.sh` runs Fig. 4, 9, 10 and 13 at paper scale when a device is lent, and its "
                    "output directory can be added to the command above). The deep linear network's CPU scale is the "
                    'paper\'s protocol (10k full-batch steps, float64): its rows say "paper protocol".'
                ),
                "",
            ]
        ),
        "## Summary",
        "",
        (
            "The paper's claims, each counted once (a claim that two figures plot is counted under the first); the "
            "observations beyond the paper are apart, below."
        ),
        "",
        "| figure | scale | seeds | where | supports | contradicts | inconclusive |",
        "|---|---|---|---|---|---|---|",
    ]
    # (output directory, claim id) -> the figure whose summary row counts it
    owners: dict[str, dict[str, str]] = {}
    for f in figures:
        mine = owners.setdefault(str(Path(f["dir"]).parent), {})
        counts = dict.fromkeys(("supports", "contradicts", "inconclusive"), 0)
        for c in f["claims"]:
            if c.get("beyond_paper"):
                continue
            cid = c.get("id") or f"{f.get('figure')}:{c.get('claim')}"
            if cid in mine and mine[cid] != f.get("label"):
                continue
            mine[cid] = str(f.get("label"))
            if c.get("verdict") in counts:
                counts[c["verdict"]] += 1
        lines.append(
            f"| [{f.get('label')}](#{_anchor(f)}) {_cell(f.get('title', ''))} | "
            f"{_scale_text(f)} | {len(f.get('seeds', [0]))} | {_cell(f.get('where', '?'))} | "
            f"{counts['supports']} | {counts['contradicts']} | {counts['inconclusive']} |"
        )
    if notes is not None:
        lines += ["", '<a id="what-changed"></a>', "## What changed", "", Path(notes).read_text().strip()]
    beyond: list[tuple[dict[str, Any], dict[str, Any]]] = []
    for f in figures:
        lines += [
            "",
            f'<a id="{_anchor(f)}"></a>',
            f"## {f.get('label')}: {f.get('title')} ({_scale_text(f)} scale, {_seeds(f)})",
            "",
            f"- Command: `{f.get('command')}`",
            f"- Seeds: {', '.join(map(str, f.get('seeds', [0])))}; machine: {f.get('where', '?')}",
            f"- Experiments: {', '.join(f.get('experiments', []))} ({_minutes(f.get('seconds'))} of training and "
            f"measurement, shared experiments counted in every figure that reads them); report: "
            f"`{f['dir']}/report.html`",
            f"- The paper: {f.get('reading')}",
            "",
        ]
        paper = [c for c in f["claims"] if not c.get("beyond_paper")]
        beyond += [(f, c) for c in f["claims"] if c.get("beyond_paper")]
        if not paper:
            lines.append("No claim of the paper applies to the runs found.")
            continue
        lines += _claims_rows(paper, owners.get(str(Path(f["dir"]).parent), {}), str(f.get("label")))
    if beyond:
        lines += [
            "",
            '<a id="beyond-the-paper"></a>',
            "## Beyond the paper",
            "",
            "Our observations on the same runs, not claims of the paper: never counted above.",
            "",
            "| figure | claim | statistic | estimate [95% interval] (half-width) | verdict | scale |",
            "|---|---|---|---|---|---|",
        ]
        for f, c in beyond:
            lines.append(
                f"| [{f.get('label')}](#{_anchor(f)}) | {_cell(c.get('claim'))} | "
                f"{_cell(c.get('statistic'))} | {_cell(estimate_text(c))} | {_cell(_verdict_cell(c))} | "
                f"{_cell(_scale_cell(c))} |"
            )
    return "\n".join(lines) + "\n"


__all__ = ["load_figures", "markdown"]
