"""What `denoise` and `localize` share for runs over many acquisitions.

Dask scheduler options, input expansion, skipping finished outputs, a per-file report and a
summary (table or JSON lines).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..batch import BatchItem, item_json, json_line, run_batch
from ..cluster import dask_scheduler

PANEL = "Batches and clusters"

Scheduler = Annotated[
    str,
    typer.Option(
        "--scheduler",
        help="Where dask runs blocks: threads (default), processes, local (a dask.distributed LocalCluster of --workers processes) or the address of a running dask.distributed scheduler, e.g. tcp://host:8786.",
        rich_help_panel=PANEL,
    ),
]
Cluster = Annotated[
    str | None,
    typer.Option(
        "--cluster",
        help="Start --workers jobs on an HPC scheduler via dask-jobqueue: slurm or pbs (site settings from your dask-jobqueue config).",
        rich_help_panel=PANEL,
    ),
]
Workers = Annotated[
    int,
    typer.Option(
        "--workers", help="Worker processes / cluster jobs for --scheduler local or --cluster.", rich_help_panel=PANEL
    ),
]
WorkerMemory = Annotated[
    str, typer.Option("--worker-memory", help="Memory per cluster job, e.g. 16GB.", rich_help_panel=PANEL)
]
WorkerGPUs = Annotated[
    int,
    typer.Option(
        "--worker-gpus", help="GPUs per cluster job (declared as the dask worker resource GPU).", rich_help_panel=PANEL
    ),
]


@dataclass(frozen=True)
class DaskSpec:
    """Where dask runs blocks: the arguments of :func:`smlmdn.cluster.dask_scheduler`."""

    scheduler: str = "threads"
    cluster: str | None = None
    workers: int = 2
    worker_memory: str = "16GB"
    worker_gpus: int = 0

    def scheduler_context(self):  # a context manager yielding a Client or None
        """Return a context manager yielding the dask.distributed Client these options ask for, or None."""
        return dask_scheduler(
            self.scheduler,
            cluster=self.cluster,
            workers=self.workers,
            worker_memory=self.worker_memory,
            worker_gpus=self.worker_gpus,
        )


#: The dask options, by parameter name, with their defaults: injected by :func:`smlmdn.cli.app.command`
#: into every subcommand that takes a ``dask_spec: DaskSpec`` parameter.
DASK_OPTIONS = {
    "scheduler": (Scheduler, "threads"),
    "cluster": (Cluster, None),
    "workers": (Workers, 2),
    "worker_memory": (WorkerMemory, "16GB"),
    "worker_gpus": (WorkerGPUs, 0),
}

JsonLines = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print one JSON line per finished movie and a summary line (for job logs).",
        rich_help_panel=PANEL,
    ),
]


def run_movies(
    movies: list[Path],
    outputs: list[Path],
    work: Callable[[Path, Path], str],
    *,
    batch: bool,
    overwrite: bool,
    as_json: bool,
    quiet: bool,
    dask_spec: DaskSpec,
) -> list[BatchItem]:
    """Run ``work(movie, output) -> message`` for each movie under the chosen dask scheduler.

    Not ``batch`` (one movie named on its own): errors propagate as usual (one line, exit 1) and an
    existing output is refused unless ``overwrite``. ``batch``: a movie whose output exists is skipped
    (unless ``overwrite``), a failing movie is reported and the rest go on, a summary table (or JSON
    lines with ``as_json``) ends the run, and the exit code is 1 if any movie failed.
    ``outputs[i]`` is the output whose existence marks movie ``i`` as finished.
    """
    if not batch:
        with dask_spec.scheduler_context():
            message = work(movies[0], outputs[0])
        if as_json:
            typer.echo(
                json_line(
                    "summary",
                    done=1,
                    skipped=0,
                    failed=0,
                    items=[asdict(BatchItem(str(movies[0]), str(outputs[0]), "done", message))],
                )
            )
        else:
            typer.echo(message)
        return [BatchItem(str(movies[0]), str(outputs[0]), "done", message)]
    out = Console()
    err = Console(stderr=True)

    def report(item: BatchItem) -> None:
        if as_json:
            typer.echo(item_json(item))
        elif item.status == "failed":
            err.print(f"[red]failed:[/red] {escape(f'{item.input}: {item.message}')}", highlight=False, soft_wrap=True)
        elif not quiet or len(movies) == 1:
            out.print(
                f"{item.status}: {item.input} -> {item.output}" + (f" ({item.message})" if item.message else ""),
                highlight=False,
                markup=False,
                soft_wrap=True,
            )

    if as_json:
        typer.echo(json_line("start", movies=len(movies), scheduler=dask_spec.cluster or dask_spec.scheduler))
    with dask_spec.scheduler_context():
        items = run_batch(movies, outputs, work, overwrite=overwrite, report=report)
    counts = {s: sum(i.status == s for i in items) for s in ("done", "skipped", "failed")}
    if as_json:
        typer.echo(json_line("summary", **counts, items=[asdict(i) for i in items]))
    elif len(items) > 1 and not quiet:
        table = Table(title=f"{counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed")
        for col in ("input", "status", "output / message", "s"):
            table.add_column(col)
        for i in items:
            style = {"failed": "red", "skipped": "yellow"}.get(i.status, "")
            table.add_row(
                escape(i.input),
                f"[{style}]{i.status}[/{style}]" if style else i.status,
                escape(i.message if i.status == "failed" else i.output),
                f"{i.seconds:.1f}",
            )
        out.print(table)
    if counts["failed"]:
        err.print(
            f"[red]error:[/red] {counts['failed']} of {len(items)} movies failed (see above). Fix: correct those inputs and rerun; finished outputs are skipped",
            highlight=False,
        )
        raise typer.Exit(1)
    return items
