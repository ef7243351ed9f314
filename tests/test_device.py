"""One --device rule for every command (smlmdn.device.resolve_device)."""

from __future__ import annotations

import pytest

from smlmdn.device import cuda_available, resolve_device
from smlmdn.errors import SmlmdnError


def test_names_map_to_cpu_or_cuda_and_unknown_names_are_one_line_errors() -> None:
    assert resolve_device("cpu") == resolve_device("CPU") == "cpu"
    assert resolve_device("auto") == resolve_device(None) == ("cuda" if cuda_available() else "cpu")
    with pytest.raises(SmlmdnError, match="unknown device 'gpu'"):
        resolve_device("gpu")


@pytest.mark.skipif(cuda_available(), reason="a CUDA device is present")
def test_cuda_without_a_device_says_how_to_fix_it() -> None:
    with pytest.raises(SmlmdnError, match="torch sees no CUDA device"):
        resolve_device("cuda")
