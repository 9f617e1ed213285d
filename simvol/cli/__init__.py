"""The ``simvol`` command-line interface (click)."""

from .app import cli, main

__all__ = ["cli", "main"]
