"""The Typer application object and the error handling every subcommand shares.

Each subcommand lives in its own module in this package and registers itself on ``app``; its body
only parses options, calls library functions and reports.
"""

from __future__ import annotations

import errno
import functools
import inspect
import sys
import typing
import warnings
from collections.abc import Callable
from typing import Any

import typer

from .. import __version__
from ..errors import SmlmdnError
from ..progress import console
from .batching import DASK_OPTIONS, DaskSpec
from .options import CAMERA_OPTIONS, camera_from_options


def _build_camera(default: Any, values: dict[str, Any]) -> Any:
    """The Camera from the camera options; None when none was given and the parameter defaults to None."""
    given = any(v is not None for v in values.values())
    return camera_from_options(**values) if given or default is not None else None


#: Parameters that stand for a group of options: name -> (options with defaults, builder).
OPTION_GROUPS = {
    "camera": (CAMERA_OPTIONS, _build_camera),
    "dask_spec": (DASK_OPTIONS, lambda default, values: DaskSpec(**values)),
}

app = typer.Typer(
    name="smlmdn",
    help=(
        "Self-supervised denoising and localization of SMLM movies.\n\n"
        "Typical run: smlmdn fit movie.tif -o model.pt; smlmdn denoise movie.tif --model model.pt "
        "-o denoised.zarr; smlmdn localize movie.tif --mode hybrid --denoised denoised.zarr -o locs.csv. "
        "Try `smlmdn demo` first: it simulates a movie and runs everything end to end."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"smlmdn {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Self-supervised denoising and localization of SMLM movies."""
    ctx.obj = {"debug": debug}


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    console().print(f"[yellow]warning:[/yellow] {message}", highlight=False)


def command(name: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``func`` as subcommand ``name`` with smlmdn's error handling.

    Errors become one line on stderr (``error: problem. Fix: ...``) with exit code 1; Ctrl-C exits
    130; a full disk says so; a traceback is shown only with ``smlmdn --debug``.

    A parameter ``camera: Camera`` is replaced by the camera options (``--camera FILE``, ``--offset``,
    ``--e-per-adu``, ``--qe``, ``--em-gain``, ``--read-noise``, ``--pixel-size``; flags override the
    file) and receives the Camera built from them; with a default of None it receives None when no
    camera option was given. A parameter ``dask_spec: DaskSpec`` is replaced by ``--scheduler``,
    ``--cluster``, ``--workers``, ``--worker-memory`` and ``--worker-gpus``.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        hints = typing.get_type_hints(func, include_extras=True)
        sig = inspect.signature(func)
        params = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in sig.parameters.values()]
        groups = {g: OPTION_GROUPS[g] for g in OPTION_GROUPS if g in sig.parameters}
        for group, (options, _) in groups.items():
            params = [p for p in params if p.name != group] + [
                inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=t) for n, (t, d) in options.items()
            ]

        @functools.wraps(func)
        def wrapper(ctx: typer.Context, *args: Any, **kw: Any) -> Any:
            debug = bool((ctx.obj or {}).get("debug"))
            err = console()
            try:
                with warnings.catch_warnings():
                    warnings.showwarning = _show_warning
                    for group, (options, build) in groups.items():
                        kw[group] = build(sig.parameters[group].default, {n: kw.pop(n) for n in options})
                    return func(*args, **kw)
            except typer.Exit:
                raise
            except SmlmdnError as exc:
                if debug:
                    err.print_exception()
                err.print(f"[red]error:[/red] {exc.one_line()}", highlight=False, soft_wrap=True)
                raise typer.Exit(1) from None
            except KeyboardInterrupt:
                err.print("[red]interrupted:[/red] no output was completed; rerun the same command to resume", highlight=False)
                raise typer.Exit(130) from None
            except OSError as exc:
                if debug:
                    err.print_exception()
                if exc.errno == errno.ENOSPC:
                    msg = "the disk is full. Fix: free space or write to another disk; rerun to resume"
                else:
                    msg = f"{exc.strerror or exc} ({exc.filename or ''}). Fix: check the path and permissions"
                err.print(f"[red]error:[/red] {msg}", highlight=False, soft_wrap=True)
                raise typer.Exit(1) from None
            except Exception as exc:  # noqa: BLE001 - last line of defence: one line, not a traceback
                if debug:
                    err.print_exception()
                err.print(
                    f"[red]error:[/red] unexpected {type(exc).__name__}: {exc}. Fix: rerun with `smlmdn --debug ...` "
                    "and report the traceback",
                    highlight=False,
                    soft_wrap=True,
                )
                raise typer.Exit(1) from None

        ctx_param = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)
        # Typer reads the signature and type hints: show it ``func``'s (resolved) plus ``ctx``.
        wrapper.__signature__ = sig.replace(parameters=[ctx_param, *params], return_annotation=None)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {"ctx": typer.Context, **{k: v for k, v in hints.items() if k != "return"}}
        del wrapper.__wrapped__
        return app.command(name, **kwargs)(wrapper)

    return decorate


def main() -> None:
    """Console-script entry point."""
    app(prog_name="smlmdn")
    sys.exit(0)
