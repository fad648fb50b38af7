"""The whole-batch helpers: identity in one process; gather and its gradient across two."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import torch

from ssl_core import distributed


def test_single_process_is_rank_0_of_1():
    assert not distributed.is_initialized()
    assert distributed.world_size() == 1
    assert distributed.rank() == 0


def test_single_process_gather_is_the_identity_and_keeps_the_gradient():
    x = torch.randn(4, 3, requires_grad=True)
    gathered = distributed.gather(x)
    assert gathered is x
    (gathered * torch.arange(3.0)).sum().backward()
    torch.testing.assert_close(x.grad, torch.arange(3.0).expand(4, 3))


TWO_PROCESSES = textwrap.dedent(
    """
    import os, sys, torch, torch.distributed as dist, torch.multiprocessing as mp
    from ssl_core import distributed

    def work(rank, port):
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}",
                                rank=rank, world_size=2)
        x = torch.full((2, 3), float(rank + 1), requires_grad=True)
        gathered = distributed.gather(x)
        assert distributed.world_size() == 2 and distributed.rank() == rank
        assert gathered.shape == (4, 3)
        assert torch.equal(gathered[:2], torch.ones(2, 3)) and torch.equal(gathered[2:], 2 * torch.ones(2, 3))
        # Each process's loss weights every gathered row by (its rank + 1); the local slice
        # gets the sum of both processes' weights, 1 + 2.
        (gathered.sum(dim=1) * (rank + 1)).sum().backward()
        assert torch.equal(x.grad, torch.full((2, 3), 3.0)), x.grad
        assert not distributed.gather(x.detach()).requires_grad
        dist.destroy_process_group()

    if __name__ == "__main__":
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.start_processes(work, args=(port,), nprocs=2, start_method="fork")
        print("ok")
    """
)


def test_two_processes_gather_in_rank_order_and_sum_gradients(tmp_path):
    script = tmp_path / "two_processes.py"
    script.write_text(TWO_PROCESSES)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"
