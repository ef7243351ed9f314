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
from contextlib import nullcontext
from typing import Any

import typer
from rich.markup import escape

from .. import __version__
from ..camera import camera_keys_given, read_camera_file
from ..errors import SmlmdnError
from ..io import frame_range, movie_camera, parse_frames
from ..progress import console
from .batching import DASK_OPTIONS, DaskSpec
from .options import CAMERA_OPTIONS, FRAME_OPTIONS, camera_from_options


def _build_camera(default: Any, values: dict[str, Any], movie_numbers: dict[str, float]) -> Any:
    """Build the Camera from the camera options over the numbers recorded in the movie (Picasso YAML).

    Returns None when none was given and the parameter defaults to None.
    """
    given = any(v is not None for v in values.values()) or bool(movie_numbers)
    if not (given or default is not None):
        return None
    return camera_from_options(**values, movie_numbers=movie_numbers)


def _given_keys(values: dict[str, Any], movie_numbers: dict[str, float]) -> frozenset[str]:
    keys = {k for k, v in values.items() if v is not None and k != "camera_file"} | set(movie_numbers)
    if values.get("camera_file") is not None:
        keys |= set(read_camera_file(values["camera_file"]))
    return frozenset(keys)


#: Parameters that stand for a group of options: name -> (options with defaults, builder).
OPTION_GROUPS: dict[str, tuple[dict[str, tuple[Any, Any]], Callable[..., Any]]] = {
    "camera": (CAMERA_OPTIONS, _build_camera),
    "dask_spec": (DASK_OPTIONS, lambda default, values, movie_numbers: DaskSpec(**values)),
}
#: Parameters naming the movie(s) a subcommand reads: they get ``--frames START:STOP``.
MOVIE_PARAMETERS = ("movie", "movies")
#: Inputs that describe the whole movie frame by frame (compare's ground truth): not with --frames.
WHOLE_MOVIE_PARAMETERS = ("truth", "clean")

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
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Self-supervised denoising and localization of SMLM movies."""
    ctx.obj = {"debug": debug}


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    console().print(f"[yellow]warning:[/yellow] {escape(str(message))}", highlight=False)


def command(name: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``func`` as subcommand ``name`` with smlmdn's error handling.

    Errors become one line on stderr (``error: problem. Fix: ...``) with exit code 1; Ctrl-C exits
    130; a full disk says so; a traceback is shown only with ``smlmdn --debug``.

    A parameter ``camera: Camera`` is replaced by the camera options (``--camera FILE``, ``--offset``,
    ``--e-per-adu``, ``--qe``, ``--em-gain``, ``--read-noise``, ``--pixel-size``; flags override the
    file) and receives the Camera built from them; with a default of None it receives None when no
    camera option was given. A parameter ``dask_spec: DaskSpec`` is replaced by ``--scheduler``,
    ``--cluster``, ``--workers``, ``--worker-memory`` and ``--worker-gpus``.

    A subcommand with a ``movie`` or ``movies`` parameter gets ``--frames START:STOP``: while it runs,
    :func:`smlmdn.io.open_movie` reads only those frames of the movies it names (see
    :func:`smlmdn.io.frame_range`). Camera numbers recorded in a single input movie (Picasso's YAML)
    become the camera defaults, under ``--camera`` and the flags.
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        hints = typing.get_type_hints(func, include_extras=True)
        sig = inspect.signature(func)
        params = [p.replace(annotation=hints.get(p.name, p.annotation)) for p in sig.parameters.values()]
        groups = {g: OPTION_GROUPS[g] for g in OPTION_GROUPS if g in sig.parameters}
        for group, (options, _) in groups.items():
            params = [p for p in params if p.name != group] + [
                inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=t)
                for n, (t, d) in options.items()
            ]
        movie_param = next((n for n in MOVIE_PARAMETERS if n in sig.parameters), None)
        if movie_param is not None and not set(FRAME_OPTIONS) & set(sig.parameters):
            params += [
                inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=t)
                for n, (t, d) in FRAME_OPTIONS.items()
            ]
        else:
            movie_param = None

        @functools.wraps(func)
        def wrapper(ctx: typer.Context, *args: Any, **kw: Any) -> Any:
            debug = bool((ctx.obj or {}).get("debug"))
            err = console()
            try:
                with warnings.catch_warnings():
                    warnings.showwarning = _show_warning
                    inputs: list[Any] = []
                    frames = None
                    if movie_param is not None:
                        given = kw.get(movie_param)
                        inputs = (
                            list(given) if isinstance(given, (list, tuple)) else [given] if given is not None else []
                        )
                        text = kw.pop("frame_range", None)
                        frames = parse_frames(text) if text is not None else None
                        whole = [n for n in WHOLE_MOVIE_PARAMETERS if kw.get(n) is not None]
                        if frames is not None and whole:
                            raise SmlmdnError(
                                f"--frames cannot be combined with --{whole[0]} (it describes the whole movie, frame by frame)",
                                f"drop --frames, or cut the movie and its --{whole[0]} to the same frames first",
                            )
                    movie_numbers = movie_camera(inputs[0]) if len(inputs) == 1 else {}
                    given_keys: frozenset[str] = frozenset()
                    for group, (options, build) in groups.items():
                        values = {n: kw.pop(n) for n in options}
                        if group == "camera":
                            given_keys = _given_keys(values, movie_numbers)
                        kw[group] = build(sig.parameters[group].default, values, movie_numbers)
                    with (
                        frame_range(frames, inputs),
                        camera_keys_given(given_keys) if "camera" in groups else nullcontext(),
                    ):
                        return func(*args, **kw)
            except typer.Exit:
                raise
            except SmlmdnError as exc:
                if debug:
                    err.print_exception()
                err.print(f"[red]error:[/red] {escape(exc.one_line())}", highlight=False, soft_wrap=True)
                raise typer.Exit(1) from None
            except KeyboardInterrupt:
                err.print(
                    "[red]interrupted:[/red] no output was completed; rerun the same command to resume", highlight=False
                )
                raise typer.Exit(130) from None
            except OSError as exc:
                if debug:
                    err.print_exception()
                if exc.errno == errno.ENOSPC:
                    msg = "the disk is full. Fix: free space or write to another disk; rerun to resume"
                else:
                    msg = f"{exc.strerror or exc} ({exc.filename or ''}). Fix: check the path and permissions"
                err.print(f"[red]error:[/red] {escape(msg)}", highlight=False, soft_wrap=True)
                raise typer.Exit(1) from None
            except Exception as exc:  # last line of defence: one line, not a traceback
                if debug:
                    err.print_exception()
                err.print(
                    f"[red]error:[/red] unexpected {type(exc).__name__}: {escape(str(exc))}. Fix: rerun with `smlmdn --debug ...` "
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
