"""Subcommands not built yet: they show in --help and exit with code 2."""

from __future__ import annotations

from collections.abc import Callable

from .app import command, not_available

STUBS = {
}


def _make(name: str, help_text: str) -> Callable[[], None]:
    def stub() -> None:
        not_available(name)

    stub.__doc__ = help_text
    return stub


for _name, _help in STUBS.items():
    command(_name)(_make(_name, _help))
