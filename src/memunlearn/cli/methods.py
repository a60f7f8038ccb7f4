"""``memunlearn methods``: list the unlearning methods, their recipes, sources and hyperparameters."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "methods",
        help="list the unlearning methods: recipes, official source, hyperparameters with defaults and ranges",
        description="List every registered unlearning method (or the ones named): the official code its default "
        "recipe transcribes (repository@commit:file:lines), its other named recipes (select one with "
        "--set METHOD.recipe=NAME), what it does differently on purpose, the test that compares it with the "
        "official code, and each hyperparameter's default and valid range. Example: memunlearn methods salun; "
        "memunlearn methods --format json",
    )
    parser.add_argument("names", nargs="*", metavar="METHOD", help="methods to list (default: all)")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="text (default) or json (strict JSON, one array)")
    parser.set_defaults(func=methods)


def format_method(info: dict) -> str:
    """The text block for one :func:`~memunlearn.methods.describe_method` record."""
    lines = [info["name"]]
    source = info["source"]
    lines.append(f"  source: {source['text']}" if source else f"  source: none ({info['no_public_code']})")
    for recipe, values in info["recipes"].items():
        changes = ", ".join(f"{k}={v!r}" for k, v in values.items()) or "the defaults below"
        lines.append(f"  recipe {recipe}{' (default)' if recipe == 'official' else ''}: {changes}")
    for difference in info["differences"]:
        lines.append(f"  differs on purpose: {difference}")
    if info["equivalence"]:
        lines.append(f"  checked by: {info['equivalence']}")
    for name, param in info["hyperparameters"].items():
        help_text = f"  ({param['help']})" if param["help"] else ""
        lines.append(f"    {name} = {param['default']!r}: {param['range']}{help_text}")
    return "\n".join(lines)


def methods(args: argparse.Namespace) -> int:
    import json

    from ..io import strict_json
    from ..methods import METHODS, describe_methods

    for name in args.names:
        METHODS.entry(name)  # an unknown name: one line listing the known ones, before any output
    infos = describe_methods(list(args.names) or None)
    if args.format == "json":
        print(json.dumps(strict_json(infos), indent=2, allow_nan=False))
    else:
        print("\n\n".join(format_method(info) for info in infos))
    return 0
