"""``landscape reproduce FIGURE``: one figure of Santurkar et al. 2018 (or ``all``)
with the paper's protocol or its CPU-scale reduction, its claims and a report laid
out like the figure (see :mod:`landscape.paper.reproduce`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

from landscape_cli import experiment
from landscape_cli.errors import InputError, friendly_errors
from landscape_cli.options import parse_seeds


def _default_scale() -> str:
    import torch

    return "paper" if torch.cuda.is_available() else "cpu"


def _listing(scale: str, seeds: int, network: str | None = None) -> str:
    from landscape.paper.reproduce import SCHEMATIC, figure_seconds, figures

    rows = [("figure", "command", "estimate", "what")]
    owner: dict[str, str] = {}  # experiment -> the first figure that runs it
    total = 0.0
    flag = f" --network {network}" if network else ""
    for fig in figures(network):
        name = fig.name
        seconds = figure_seconds(fig, scale, seeds, set(owner))
        total += seconds
        shared = sorted({owner[k] for k in fig.all_experiments if k in owner})
        note = f" + runs of {', '.join(shared)}" if shared else ""
        owner.update({k: name for k in fig.all_experiments if k not in owner})
        rows.append(
            (
                name,
                f"landscape reproduce {name} --scale {scale}{flag}",
                experiment.duration(seconds) + note,
                f"{fig.label}: {fig.title}",
            )
        )
    for name, why in ({} if network else SCHEMATIC).items():  # in the paper's order, with nothing to run
        at = next((i for i, r in enumerate(rows) if r[0] == f"fig{int(name[3:]) + 1}"), len(rows))
        rows.insert(at, (name, "-", "-", why))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}" for r in rows]
    where = "a 2-core CPU" if scale == "cpu" else "one H200"
    lines.append(
        f"all: landscape reproduce all --scale {scale}{flag}: about {experiment.duration(total)} on {where} "
        f"(estimates from passes x measured seconds per pass; each experiment runs once)"
    )
    return "\n".join(lines)


def _label(records, key: str, collide: set[str]):
    return [
        dataclasses.replace(r, label=f"{key}: {r.label}") if r.label.split("/")[0] in collide else r for r in records
    ]


def _load(fig, out: Path) -> dict:
    """The runs of each of the figure's experiments that exist, read once."""
    from landscape.report import data

    return {k: data.load_runs([out / k]) for k in fig.all_experiments if (out / k).is_dir()}


def _check_records(loaded: dict, keys) -> list:
    """The runs of a check's experiments, labelled as ``load_runs`` labels them together."""
    from landscape.report import data

    records = [r for k in keys for r in loaded.get(k, [])]
    labels = data.unique_labels([r.label for r in records], [r.path for r in records])
    return [dataclasses.replace(r, label=label) for r, label in zip(records, labels)]


def figure_records(loaded: dict) -> list:
    """The figure's runs, labelled by experiment where two experiments name a variant alike."""
    names: dict[str, int] = {}
    for records in loaded.values():
        for variant in {r.label.split("/")[0] for r in records}:
            names[variant] = names.get(variant, 0) + 1
    collide = {n for n, count in names.items() if count > 1}
    return [r for key, records in loaded.items() for r in _label(records, key, collide)]


def _where(device: str) -> str:
    import os

    from landscape.distributed import resolve_device

    d = resolve_device(device)
    if d.type == "cuda":
        import torch

        return f"{d} ({torch.cuda.get_device_name(d)})"
    return f"cpu ({os.cpu_count()} cores)"


def figure_runs(loaded: dict, out: Path) -> list[dict]:
    """What each of the figure's runs actually is, from its stored config (figure.json's
    ``runs``): its model, width, steps, training images, test samples and seed.
    ``loaded``: the runs of each experiment, as :func:`_load` read them."""
    rows = []
    for key, records in loaded.items():
        for record in records:
            c = record.config
            model, data, train = (c.get(k) or {} for k in ("model", "data", "train"))
            rows.append(
                {
                    "experiment": key,
                    "run": record.path.relative_to(out / key).as_posix(),
                    "model": model.get("name"),
                    "width_mult": model.get("width_mult"),
                    "steps": c.get("total_steps", train.get("steps")),
                    "train_images": data.get("subset"),
                    "eval_samples": train.get("eval_samples"),
                    "seed": train.get("seed"),
                }
            )
    return rows


def finish_figure(fig, out: Path, scale: str, seeds, device: str = "auto", subset: int | None = None) -> str:
    """The figure's claims (claims.json, figure.json) and report, in ``out/<fig.folder>``
    (``fig3-dln`` for Fig. 3's DLN panels alone); returns the table."""
    from landscape.paper import claims
    from landscape.paper.reproduce import paper_protocol
    from landscape.report.html import write_page
    from landscape.runs import write_json_atomic

    loaded = _load(fig, out)
    found = []
    for check in fig.checks:
        found += claims.group_claims(
            [check.name], _check_records(loaded, check.experiments), paper_protocol(check.experiments[0])
        )
    fig_dir = out / fig.folder
    fig_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(fig_dir / "claims.json", [c.to_dict() for c in found])
    command = f"landscape reproduce {fig.name} --scale {scale}" + (
        f" --seeds {','.join(map(str, seeds))}" if seeds else ""
    )
    command += f" --subset {subset}" if subset else ""
    command += f" --network {fig.network}" if fig.network else ""
    write_json_atomic(
        fig_dir / "figure.json",
        {
            "figure": fig.name,
            "label": fig.label,
            "title": fig.title,
            "reading": fig.reading,
            "scale": scale,
            "seeds": list(seeds) if seeds else [0],
            "command": command,
            "experiments": list(fig.all_experiments),
            "where": _where(device),
            "subset": subset,
            "network": fig.network,
            "runs": figure_runs(loaded, out),
        },
    )
    write_page(
        figure_records(loaded),
        fig_dir / "report.html",
        f"{fig.label}: {fig.title} ({scale} scale)",
        [c.to_dict() for c in found],
        fig.sections,
        f"The paper: {fig.reading}",
    )
    return claims.table(found)


def default_out(scale: str, seeds, subset: int | None = None) -> Path:
    """``runs/reproduce/<scale>``, ``-seeds0-1`` with seeds, ``-subsetN`` with a subset
    (runs on part of the data never share a folder with full-data runs)."""
    name = scale + (f"-seeds{'-'.join(map(str, seeds))}" if seeds else "") + (f"-subset{subset}" if subset else "")
    return Path("runs") / "reproduce" / name


def mismatched_runs(out: Path, wanted: dict) -> dict[str, list[tuple[str, str]]]:
    """The existing runs under ``out`` made with other settings than ``wanted`` asks
    (experiment key -> its configs): key -> [(run name, how it differs)]; read only."""
    from landscape.runner.run_match import run_mismatch

    found: dict[str, list[tuple[str, str]]] = {}
    for key, configs in wanted.items():
        for config in configs:
            how = run_mismatch(out / key / config.name, config.to_dict())
            if how is not None:
                found.setdefault(key, []).append((config.name, how))
    return found


def mismatch_message(out: Path, mismatched: dict[str, list[tuple[str, str]]]) -> str:
    """One line: each experiment's mismatched runs, those that differ alike together."""
    parts = []
    for key, runs in mismatched.items():
        groups: dict[str, list[str]] = {}
        for name, how in runs:
            groups.setdefault(how, []).append(name)
        what = "; ".join(f"{', '.join(names)}: {how}" for how, names in groups.items())
        parts.append(f"{out / key} holds runs made with other settings ({what})")
    return "; ".join(parts) + "; rerun them with --rerun, or choose another --out"


def move_aside(out: Path, mismatched: dict[str, list[tuple[str, str]]]) -> list[tuple[Path, Path]]:
    """Rename each mismatched run to ``out/<key>/.replaced/<name>-<time>`` (never
    deleted); returns (from, to) pairs."""
    import time

    stamp = time.strftime("%Y%m%d-%H%M%S")
    moved = []
    for key, runs in mismatched.items():
        for name, _ in runs:
            src = out / key / name
            base = out / key / ".replaced" / f"{name.replace('/', '_')}-{stamp}"
            dst, n = base, 1
            while dst.exists():
                n += 1
                dst = base.with_name(f"{base.name}-{n}")
            dst.parent.mkdir(parents=True, exist_ok=True)
            src.rename(dst)
            moved.append((src, dst))
    return moved


@click.command()
@click.argument("figure", required=False)
@click.option(
    "--scale",
    type=click.Choice(["paper", "cpu"]),
    default=None,
    help="paper: the paper's protocol (GPU work); cpu: the documented reduction for a 2-core CPU "
    "[default: paper when CUDA is available, else cpu].",
)
@click.option("--seeds", default=None, help="Run every variant once per seed: a count N (0..N-1) or a comma list.")
@click.option(
    "--list", "list_", is_flag=True, help="Print every figure with its command and estimated time, then exit."
)
@click.option(
    "--data-dir",
    envvar="LANDSCAPE_DATA",
    default=None,
    show_envvar=True,
    help="Folder holding cifar-10-batches-py [default: ./data].",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output directory [default: runs/reproduce/<scale>, with -seeds<list> after it with --seeds "
    "and -subset<N> with --subset]; run again to continue an interrupted figure.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--subset",
    type=click.IntRange(min=1),
    default=None,
    help="Keep the first N CIFAR-10 training images (a machine with part of the data set only); "
    "recorded in each figure's command.",
)
@click.option(
    "--rerun",
    is_flag=True,
    help="Runs in OUT made with other settings (another scale, subset or seed): move them to "
    "OUT/<experiment>/.replaced/ and run them again [default: refuse, and change nothing].",
)
@click.option(
    "--network",
    type=click.Choice(["vgg", "dln", "resnet"]),
    default=None,
    help="Only the figure's panels on this network (Fig. 3, 5 and 11 show the VGG and the DLN; the "
    "DLN's are cheap): written to OUT/FIGURE-NETWORK when the figure has others [default: all].",
)
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show progress bars.")
@friendly_errors
def reproduce(
    figure: str | None,
    scale: str | None,
    seeds: str | None,
    list_: bool,
    data_dir: str | None,
    out: Path | None,
    device: str,
    subset: int | None,
    rerun: bool,
    network: str | None,
    progress: bool,
) -> None:
    """Regenerate FIGURE of the paper (fig1 ... fig13 but fig7, the theory's schematic;
    seed-vgg11, seed-resnet50; or all): train its experiments with the paper's protocol (--scale paper) or the CPU
    reduction (--scale cpu), check the paper's claims on them and write
    OUT/FIGURE/claims.json and OUT/FIGURE/report.html. Experiments that figures share
    run once; a second call continues where an interrupted one stopped. Runs already
    in OUT are reused only when made with the same settings (else it stops before
    anything is written; see --rerun)."""
    from landscape.paper.reproduce import EXPERIMENTS, FIGURES, SCHEMATIC, experiment_configs, figures, paper_protocol
    from landscape.paper.reproduce import figure as pick

    scale = scale or _default_scale()
    seed_list = parse_seeds(seeds, 0)
    if list_:
        click.echo(_listing(scale, len(seed_list or (0,)), network))
        return
    if figure is None:
        raise InputError("give a FIGURE (fig1 ... fig13, seed-vgg11, seed-resnet50, all) or --list")
    if figure in SCHEMATIC:
        raise InputError(SCHEMATIC[figure] + f"; choose from {', '.join(FIGURES)} or all (see --list)")
    if figure != "all" and figure not in FIGURES:
        raise InputError(f"unknown figure {figure!r}; choose from {', '.join(FIGURES)} or all (see --list)")
    if figure == "all":
        figs = figures(network)
    else:
        try:
            figs = [pick(figure, network)]
        except ValueError as e:
            raise InputError(str(e)) from None
    names = [f.folder for f in figs]
    out = out or default_out(scale, seed_list, subset)
    wanted = {
        key: experiment_configs(key, scale, data_dir=data_dir, device=device, seeds=seed_list, subset=subset)
        for fig in figs
        for key in fig.all_experiments
    }
    mismatched = mismatched_runs(out, wanted)  # before anything is trained or written
    if mismatched and not rerun:
        raise InputError(mismatch_message(out, mismatched))
    click.echo(f"reproduce: {', '.join(names)} at {scale} scale into {out}")
    if mismatched:
        from landscape import distributed

        for src, dst in distributed.on_main(lambda: move_aside(out, mismatched)):
            click.echo(f"moved {src} (made with other settings) to {dst}; running it again")
    done: set[str] = set()
    for fig in figs:
        name = fig.folder
        click.echo(f"== {name}: {fig.label}: {fig.title}")
        for key in fig.all_experiments:
            if key in done:
                continue
            configs = wanted[key]
            click.echo(f"-- experiment {key} ({EXPERIMENTS[key].kind}, {len(configs)} runs)")
            click.echo(experiment.plan(configs))
            results = experiment.run(
                configs,
                out / key,
                EXPERIMENTS[key].kind,
                progress,
                report=True,
                paper=paper_protocol(key),
                echo_claims=False,
            )
            if len(results) < len(configs) or any(r is not None and r.status == "interrupted" for r in results):
                click.echo(f"interrupted; continue with the same command (landscape reproduce {figure} ...)")
                raise click.exceptions.Exit(130)
            done.add(key)
        click.echo(f"claims of {name} ({fig.label}; the paper: {fig.reading}):")
        click.echo(finish_figure(fig, out, scale, seed_list, device, subset))
        click.echo(f"report: {out / name / 'report.html'}")
    if len(names) > 1:
        click.echo(f"all figures written; summarize them with: python scripts/reproduction.py {out}")
