"""Distributed search on the CPU (gloo, 2 processes, DDP): a norm that synchronises its
statistics by all-reduce keeps doing so through the channel masks, the alphas stay identical
on every rank, and each rank draws its own Gumbel noise (the seeding policy of `gumbel.py`).

torch's SyncBatchNorm refuses CPU tensors under DDP, so the synchronising norm here is a
callable of our own, as detectron2's NaiveSyncBatchNorm is."""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F
from torch.distributed.nn.functional import all_reduce
from torch.nn.parallel import DistributedDataParallel

from mobile_cv_nas.search import GumbelSampler, Supernet
from mobile_cv_nas.search.masked_channel import MaskedChannel

WORLD = 2


class AllReduceBatchNorm(nn.BatchNorm2d):
    """A batch norm whose training statistics are the mean over all ranks' batches."""

    def forward(self, x):
        if not self.training or not dist.is_initialized():
            return super().forward(x)
        c = x.shape[1]
        moments = torch.cat([x.mean((0, 2, 3)), (x * x).mean((0, 2, 3))])
        moments = all_reduce(moments) / dist.get_world_size()  # differentiable all-reduce
        mean, mean_sq = moments[:c], moments[c:]
        var = mean_sq - mean * mean
        with torch.no_grad():
            n = x.numel() / c * dist.get_world_size()
            self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
            self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * n / (n - 1))
            self.num_batches_tracked.add_(1)
        scale = self.weight * torch.rsqrt(var + self.eps)
        shift = self.bias - mean * scale
        return x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)


def _masked_bn_stats(net):
    return {
        name: torch.cat([m.bn.running_mean, m.bn.running_var])
        for name, m in net.named_modules()
        if isinstance(m, MaskedChannel) and "bn" in m._modules
    }


def _batch(rank, step):
    g = torch.Generator().manual_seed(1000 * rank + step)  # every rank sees other images
    return torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g)


def _worker(rank, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        torch.manual_seed(0)
        net = Supernet("tiny", norm=AllReduceBatchNorm, sampler=GumbelSampler(seed=0)).train()
        ddp = DistributedDataParallel(net, broadcast_buffers=False)  # stats: only all-reduce
        weights = torch.optim.SGD(net.weight_parameters(), lr=0.1, momentum=0.9)
        alphas = torch.optim.Adam(net.arch_parameters(), lr=0.01)
        x, y = _batch(rank, 0)  # the weight step, on the 80 % split
        F.cross_entropy(ddp(x), y).backward()
        weights.step()
        gates = {n: d.gates.detach().clone() for n, d in net.decisions.items()}
        weights.zero_grad(), alphas.zero_grad()
        x, y = _batch(rank, 1)  # the alpha step, on the 20 % split
        (F.cross_entropy(ddp(x), y) + 1e-7 * net.cost()).backward()
        alphas.step()
        # control: a plain batch norm, not synchronised, ends with each rank's own statistics
        torch.manual_seed(0)
        plain = Supernet("tiny", sampler=GumbelSampler(seed=0)).train()
        plain(_batch(rank, 0)[0])
        torch.save(
            {
                "stats": _masked_bn_stats(net),
                "plain_stats": _masked_bn_stats(plain),
                "alphas": {n: d.alpha.detach().clone() for n, d in net.decisions.items()},
                "gates": gates,
                "rank": net.sampler.rank,
            },
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes
def test_two_process_ddp_search_step(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD))
    assert (r0["rank"], r1["rank"]) == (0, 1)  # the sampler took the process group's rank
    # the masked path ran the synchronising norm: identical statistics on both ranks ...
    assert r0["stats"] and r0["stats"].keys() == r1["stats"].keys()
    for name in r0["stats"]:
        assert torch.allclose(r0["stats"][name], r1["stats"][name], atol=1e-6), name
    # ... which a plain batch norm on the same per-rank batches does not give
    assert any(
        not torch.allclose(r0["plain_stats"][n], r1["plain_stats"][n], atol=1e-6)
        for n in r0["plain_stats"]
    )
    # the alphas agree (DDP averages their gradients), the Gumbel noise does not
    for name in r0["alphas"]:
        assert torch.equal(r0["alphas"][name], r1["alphas"][name]), name
    assert any(not torch.equal(r0["gates"][n], r1["gates"][n]) for n in r0["gates"])
