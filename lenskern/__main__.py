"""Command line: ``python -m lenskern table`` prints the implementation and
recommendation tables the README embeds (generated from the registry; a test
keeps them in sync)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from lenskern import registry


def implementation_table() -> str:
    """Markdown: one row per kernel, one column per backend, the algorithms
    each defines (whether or not its device is here)."""
    header = "| kernel | " + " | ".join(registry.BACKENDS) + " |"
    lines = [header, "|" + " --- |" * (len(registry.BACKENDS) + 1)]
    for kernel in registry.KERNELS + registry.EXAMPLES:
        cells = []
        for backend in registry.BACKENDS:
            names = registry.declared(kernel, backend)
            why = registry.NOT_IMPLEMENTED.get((kernel, backend), "its library is not installed here")
            cells.append(", ".join(f"`{n}`" for n in names) or f"n/a ({why})")
        lines.append(f"| `{kernel}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def recommended_table() -> str:
    """Markdown: what ``compute(kernel)`` picks here, the runners-up, and why."""
    lines = ["| kernel | `compute` picks | then | why |", "| --- | --- | --- | --- |"]
    for kernel in registry.KERNELS + registry.EXAMPLES:
        first, *rest = registry.RECOMMENDED[kernel]
        then = ", ".join(f"`{n}`" for n in rest[:3])
        lines.append(f"| `{kernel}` | `{first}` | {then} | {registry.WHY[kernel].split(': ', 1)[1]} |")
    return "\n".join(lines)


TABLES = {"implementations": implementation_table, "recommended": recommended_table}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lenskern", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    table = commands.add_parser("table", help="print the README's tables generated from the registry")
    table.add_argument("--readme", type=Path, help="rewrite the tables inside this README instead")
    args = parser.parse_args(argv)
    if args.command == "table" and args.readme:
        text = args.readme.read_text()
        for name, make in TABLES.items():
            begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
            if begin not in text or end not in text:
                parser.error(f"{args.readme} has no {begin} ... {end} markers")
            block = f"{begin}\n{make()}\n{end}"
            text = re.sub(f"{begin}.*?{end}", lambda _, block=block: block, text, flags=re.S)
        args.readme.write_text(text)
    elif args.command == "table":
        print("\n\n".join(make() for make in TABLES.values()))


if __name__ == "__main__":
    main()
