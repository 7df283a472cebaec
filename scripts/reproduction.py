"""Write reports/REPRODUCTION.md from `landscape reproduce` output directories.

    python scripts/reproduction.py runs/reproduce/cpu [runs/reproduce/paper ...] [-o reports/REPRODUCTION.md]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from landscape.report.reproduction import load_figures, markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dirs", nargs="+", type=Path, help="landscape reproduce --out directories")
    parser.add_argument("-o", "--output", type=Path, default=Path("reports/REPRODUCTION.md"))
    args = parser.parse_args(argv)
    missing = [d for d in args.out_dirs if not d.is_dir()]
    if missing:
        print(f"error: {missing[0]}: no such directory", file=sys.stderr)
        return 2
    if not load_figures(args.out_dirs):
        print(f"error: no finished figure (figure.json + claims.json) under {', '.join(map(str, args.out_dirs))}",
              file=sys.stderr)
        return 2
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(markdown(args.out_dirs))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
