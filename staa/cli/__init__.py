"""The application layer: the `staa` command line, its run-folder rules and the demo. Nothing imports it."""

from staa.cli.commands import build_parser, main

__all__ = ["build_parser", "main"]
