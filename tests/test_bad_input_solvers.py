"""Bad input to the solvers layer (and the shared device argument): one row per case, a clear error naming the
argument and the value.

A new public function joins by adding a row to ``CASES``: ``pytest.param(call, error type, message regex,
id=...)``. Every row runs in milliseconds: each is refused before a solver starts.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ufm.device import default_device
from ufm.geometry import ClassMoments, pedcc
from ufm.solvers import solve_gd

Y = np.repeat(np.arange(3), 4)  # 12 samples, 3 classes of 4

CASES = [
    # ---- the device argument (ufm.device.check_device: every device argument of the project)
    pytest.param(lambda: solve_gd(Y, 4, device="gpu", steps=1), ValueError,
                 r"device must be one of 'auto', 'cpu', 'cuda', 'cuda:N', 'mps'.*; got 'gpu'", id="gd-device-gpu"),
    pytest.param(lambda: default_device("tpu"), ValueError, r"device must be one of .*got 'tpu'", id="device-tpu"),
    pytest.param(lambda: default_device("meta"), ValueError, r"device must be one of .*got 'meta'", id="device-meta"),
    pytest.param(lambda: default_device(0), TypeError, r"device must be a string .*got 0 \(int\)", id="device-int"),
    pytest.param(lambda: ClassMoments(3, 4, device="gpu"), ValueError, r"device must be one of .*got 'gpu'",
                 id="class-moments-device"),
    pytest.param(lambda: pedcc(3, 4, device="gpu"), ValueError, r"device must be one of .*got 'gpu'", id="pedcc-device"),
]
if not torch.cuda.is_available():
    CASES.append(pytest.param(lambda: default_device("cuda:0"), ValueError,
                              r"device 'cuda:0' was asked for but CUDA is not available", id="device-cuda-absent"))


@pytest.mark.parametrize("call,error,match", CASES)
def test_bad_input_is_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_device_accepts_what_it_lists():
    assert default_device("cpu") == torch.device("cpu")
    assert default_device(torch.device("cpu")) == torch.device("cpu")
    assert default_device("auto").type in ("cpu", "cuda")
    assert default_device(None) == default_device("auto")
