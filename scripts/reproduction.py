"""Write reports/REPRODUCTION.md from `landscape reproduce` output directories.

python scripts/reproduction.py runs/reproduce/cpu [runs/reproduce/paper ...] [-o reports/REPRODUCTION.md]
    [--notes reports/reproduction-notes.md]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from landscape.paper.reproduction import load_figures, markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dirs", nargs="+", type=Path, help="landscape reproduce --out directories")
    parser.add_argument("-o", "--output", type=Path, default=Path("reports/REPRODUCTION.md"))
    parser.add_argument(
        "--notes",
        type=Path,
        default=None,
        help="markdown printed below the summary (what changed from the previous page, and why)",
    )
    args = parser.parse_args(argv)
    if args.notes is not None and not args.notes.is_file():
        print(f"error: {args.notes}: no such file", file=sys.stderr)
        return 2
    missing = [d for d in args.out_dirs if not d.is_dir()]
    if missing:
        print(f"error: {missing[0]}: no such directory", file=sys.stderr)
        return 2
    if not load_figures(args.out_dirs):
        print(
            f"error: no finished figure (figure.json + claims.json) under {', '.join(map(str, args.out_dirs))}",
            file=sys.stderr,
        )
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(markdown(args.out_dirs, notes=args.notes))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
