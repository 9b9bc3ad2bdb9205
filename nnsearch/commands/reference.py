"""`nnsearch cli-reference`: the CLI reference in Markdown, generated from the parser itself (docs/cli.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterator

from nnsearch.commands import add_out_option

_TITLE = "# Command-line reference"
_INTRO = ("Generated from the parser by `nnsearch cli-reference --out docs/cli.md`; `nnsearch COMMAND --help` "
          "prints the same. Options of `nnsearch search` that set a study setting name it in the configuration "
          "tree of [the configuration guide](configuration.md).")


def cli_reference(parser: argparse.ArgumentParser) -> str:
    """The Markdown reference of every command and sub-command of `parser`."""
    lines = [_TITLE, "", _INTRO, ""]
    for path, command, summary in _commands(parser, []):
        lines += [f"## `{' '.join(path)}`", ""]
        if summary:
            lines += [_sentence(summary), ""]
        if command.description and command.description != summary:
            lines += [command.description, ""]
        usage = " ".join(command.format_usage().split())
        lines += ["```text", usage.removeprefix("usage: "), "```", ""]
        rows = list(_option_rows(command))
        if rows:
            lines += ["| option | meaning |", "|---|---|"] + rows + [""]
    return "\n".join(lines)


def _commands(parser: argparse.ArgumentParser, path: list[str],
              summary: str = "") -> Iterator[tuple[list[str], argparse.ArgumentParser, str]]:
    """(command path, its parser, its one-line help) for every leaf command, in help order."""
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    if sub is None:
        yield ["nnsearch", *path], parser, summary
        return
    helps = {choice.dest: choice.help or "" for choice in sub._choices_actions}
    for name, child in sub.choices.items():
        yield from _commands(child, [*path, name], helps.get(name, ""))


def _option_rows(command: argparse.ArgumentParser) -> Iterator[str]:
    formatter = command._get_formatter()
    for action in command._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            name = ", ".join(action.option_strings)
            if action.nargs != 0:
                name += " " + formatter._format_args(action, formatter._get_default_metavar_for_optional(action))
        else:
            name = formatter._get_default_metavar_for_positional(action) if action.metavar is None else action.metavar
        text = formatter._expand_help(action) if action.help else ""
        if action.choices and "{" not in name and "one of" not in text:
            text += f" (one of {', '.join(map(str, action.choices))})"
        yield f"| `{_cell(name)}` | {_cell(text)} |"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _sentence(text: str) -> str:
    text = " ".join(text.split())
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def cmd_reference(args: argparse.Namespace) -> int:
    from nnsearch.cli import build_parser

    text = cli_reference(build_parser()) + "\n"
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("cli-reference", help="print the command-line reference as Markdown (docs/cli.md)")
    add_out_option(parser, "write it to this file instead of standard output")
    parser.set_defaults(handler=cmd_reference)
