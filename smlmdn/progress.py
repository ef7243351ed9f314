"""Progress bars (rich) for long work; silent when disabled or when stderr is not a terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def console() -> Console:
    """Return the stderr console used for progress, warnings and errors."""
    return Console(stderr=True)


@contextmanager
def track(total: int, description: str, enabled: bool = True, completed: int = 0) -> Iterator[Callable[..., None]]:
    """Yield ``advance(n, **fields)``; shows a rich bar on stderr when enabled and on a terminal.

    Extra keyword ``fields`` (e.g. ``loss=0.3``) are shown after the bar.
    """
    show = enabled and sys.stderr.isatty()
    if not show:
        yield lambda n=1, **fields: None
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        console=console(),
        transient=False,
    )
    with progress:
        task = progress.add_task(description, total=total, completed=completed, info="")

        def advance(n: int = 1, **fields: object) -> None:
            info = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
            if fields:
                progress.update(task, advance=n, info=info)
            else:
                progress.update(task, advance=n)

        yield advance
