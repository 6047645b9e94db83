"""benchmarks.gpu_check on a machine without CUDA: it says so and exits 0 (its checks need a GPU)."""

import pytest
import torch

from benchmarks import gpu_check


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU it runs every check, for minutes")
def test_without_cuda_it_says_so_and_exits_0(capsys):
    assert gpu_check.main([]) == 0
    assert "No CUDA GPU on this machine" in capsys.readouterr().out
