"""MkDocs hooks: pages generated from the code, so they cannot drift from it.

A page holding the marker ``<!-- generated: cli-reference -->`` gets the help of every
`nnsearch` command from the argparse parser; ``<!-- generated: api-reference -->`` gets
mkdocstrings directives for every public name of `nnsearch.__all__` (wherever its module
lives) followed by the stage packages.
"""

from __future__ import annotations

import argparse
import os

CLI_MARKER = "<!-- generated: cli-reference -->"
API_MARKER = "<!-- generated: api-reference -->"

#: Stage packages whose docstrings and public members the API reference shows after the facade.
STAGES = ("search", "train", "latency", "store", "nnd", "export", "analysis", "replay", "model", "common", "errors")


def _commands(parser: argparse.ArgumentParser, prefix: str) -> list[tuple[str, argparse.ArgumentParser]]:
    """(full command name, parser) for the parser and every sub-command below it, in help order."""
    found = [(prefix, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _commands(sub, f"{prefix} {name}")
    return found


def cli_reference() -> str:
    """One section per command with its `--help` text, at a fixed width."""
    os.environ["COLUMNS"] = "100"
    from nnsearch.cli import build_parser

    sections = []
    for name, parser in _commands(build_parser(), "nnsearch"):
        sections.append(f"## `{name}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
    return "\n".join(sections)


def api_reference() -> str:
    """mkdocstrings directives: the facade's names first, then the stage packages."""
    import nnsearch

    lines = ["## The facade: `import nnsearch`\n", "::: nnsearch\n    options:\n      members: false\n"]
    for name in sorted(nnsearch._EXPORTS):
        module, attribute = nnsearch._EXPORTS[name]
        target = module if attribute is None else f"{module}.{attribute}"
        lines.append(f"### `nnsearch.{name}`\n\n::: {target}\n    options:\n      show_root_heading: false\n")
    lines.append("## Stage packages\n")
    for stage in STAGES:
        lines.append(f"::: nnsearch.{stage}\n    options:\n      heading_level: 3\n      members: false\n")
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    if API_MARKER in markdown:
        markdown = markdown.replace(API_MARKER, api_reference())
    return markdown
