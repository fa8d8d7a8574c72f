"""Probe (issue 33): why a group of LeNet-5 copies stays near 1x a lone net per candidate.

One training step (forward, cross-entropy, backward) of LeNet-5 on a batch of
128 images, 1 thread: a lone net; the same in channels-last memory format; and
8 copies as one batched network (the copies' first convolutions as one
convolution with 8 x 6 output channels on the shared input, the second as a
grouped convolution, ``groups=8``, the fully connected layers as ``bmm`` in the
features-before-rows layout of ``metaloss_sk.batched``). Then torch.profiler's
top operators of the lone step and the batched step.

    python benchmarks/studies/probe_batched_conv.py
"""

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for tasks.py
from tasks import LeNet5  # noqa: E402

torch.set_num_threads(1)
G, B = 8, 128


def timed(step, n=10):
    step()
    start = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - start) / n * 1e3


def main():
    torch.manual_seed(0)
    x, y = torch.randn(B, 1, 28, 28), torch.randint(0, 10, (B,))
    lone = LeNet5()
    channels_last = LeNet5().to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    w1, b1 = torch.randn(G * 6, 1, 5, 5, requires_grad=True), torch.randn(G * 6, requires_grad=True)
    w2, b2 = torch.randn(G * 16, 6, 5, 5, requires_grad=True), torch.randn(G * 16, requires_grad=True)
    fc = [torch.randn(G, o, i, requires_grad=True) for i, o in [(400, 120), (120, 84), (84, 10)]]
    yy = y.repeat(G)

    def lone_step():
        F.cross_entropy(lone(x), y).backward()

    def channels_last_step():
        F.cross_entropy(channels_last(x_cl), y).backward()

    def batched_step():
        h = F.max_pool2d(F.relu(F.conv2d(x, w1, b1, padding=2)), 2)  # [B, G*6, 14, 14]
        h = F.max_pool2d(F.relu(F.conv2d(h, w2, b2, groups=G)), 2)  # [B, G*16, 5, 5]
        h = h.reshape(B, G, 400).permute(1, 2, 0)  # [G, 400, B]
        h = F.relu(torch.bmm(fc[0], h))
        h = F.relu(torch.bmm(fc[1], h))
        out = torch.bmm(fc[2], h)  # [G, 10, B]
        F.cross_entropy(out.transpose(1, 2).reshape(G * B, 10), yy).backward()

    t_lone, t_cl, t_batched = timed(lone_step), timed(channels_last_step), timed(batched_step)
    print(f"lone step {t_lone:.2f} ms; channels-last {t_cl:.2f} ms ({t_cl / t_lone:.2f}x); "
          f"batched group of {G}: {t_batched:.2f} ms, per candidate {t_batched / G:.2f} ms "
          f"({t_batched / G / t_lone:.2f}x a lone step)")
    for name, step in [("lone", lone_step), ("batched", batched_step)]:
        with profile() as prof:
            step()
        print(f"\n{name} step, top operators by self CPU time:")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))


if __name__ == "__main__":
    main()
