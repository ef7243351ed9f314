"""Wall time, CPU time and resident memory of one ``smlmdn localize`` run, phase by phase (issue 15).

Runs the CLI in this process and prints, at the start and end of each phase of the pipeline (the
frame blocks, linking, the extension's pairs and tests, the final blocks and writing), the wall and
CPU seconds so far, the RSS and the peak RSS within the phase (polled every 50 ms), then
``ru_maxrss``. Usage, with the arguments of ``smlmdn localize``::

    python benchmarks/localize_phases.py localize movie.tif --camera camera.json -o out.hdf5 -q

To measure another version of the code, put its source first on ``PYTHONPATH`` (e.g. a ``git archive``).
"""

from __future__ import annotations

import functools
import os
import resource
import sys
import threading
import time
from typing import Any

T0 = time.perf_counter()
_peak = [0.0]


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _poll() -> None:
    while True:
        _peak[0] = max(_peak[0], _rss_mb())
        time.sleep(0.05)


def _stamp(what: str) -> None:
    cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    now = _rss_mb()
    print(
        f"{time.perf_counter() - T0:8.2f} s  CPU {cpu:8.2f} s  RSS {now:6.0f} MB  peak in phase {max(_peak[0], now):6.0f} MB  {what}",
        file=sys.stderr,
        flush=True,
    )
    _peak[0] = now


def _timed(module: Any, name: str) -> None:
    func = getattr(module, name)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _stamp(f"start {name}")
        result = func(*args, **kwargs)
        _stamp(f"end {name}")
        return result

    setattr(module, name, wrapper)


def main() -> None:
    threading.Thread(target=_poll, daemon=True).start()
    from smlmdn.__main__ import _import_dask_array_lean

    _import_dask_array_lean()
    import smlmdn.cli
    import smlmdn.localize.pipeline as pipeline

    _stamp("imported")
    # the phases of this version of the code; before session 11 the extension pairs were built in one step
    # (track_candidates) and accepted once for the movie (accepted_extensions), now block by block
    phases = ["_localize_blocks", "_link_blocks", "_extensions"]
    if hasattr(pipeline, "track_candidates"):
        phases += ["track_candidates", "accepted_extensions"]
    for name in phases:
        _timed(pipeline, name)
    sys.argv = ["smlmdn", *sys.argv[1:]]
    try:
        smlmdn.cli.main()
    finally:
        _stamp(f"end, written (ru_maxrss {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB)")


if __name__ == "__main__":
    main()
