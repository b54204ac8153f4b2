"""The official ST-GCN encoder's speed in PyTorch, on this machine.

Usage:
    python -m benchmarks.official_torch [--batch_size=128] [--repeats=5]
        [--threads=N]

A transcription of the official repositories' encoder (`net/st_gcn.py`,
`net/utils/tgcn.py`; ../shared/reference/FACTS.md section 2): channels-first
`(N*M, C, T, V)` activations, data batch norm over 75 channels, the graph
convolution as a 1x1 conv to 3 * C_out channels then
`einsum('nkctv,kvw->nctw')`, the temporal conv as a 9x1 `Conv2d`, dropout
0.5 in blocks 1-9, the 256-256-128 projection head. It times forward and
forward + backward in training mode at the paper's batch, 50 frames and 2
bodies, the way the official code runs on a CPU (eager PyTorch, its own
thread pool over every core), so `python -m benchmarks.run`'s encoder
figures can be compared on the same machine. An ActCLR step runs the
encoder 3 times forward and 3 times forward + backward (FACTS.md 7.4; the
batch-mean anchor is one sample), so `1 / (3 t_forward + 3 t_backward)`
bounds the official step's speed from above: it leaves out the top-k
mining, the augmentations and the data loader. The last line is one JSON
object. Needs PyTorch (`requirements-torch.txt`).
"""

import argparse
import json

import numpy as np

from benchmarks import flops
from benchmarks.run import peak_memory_mb
from benchmarks.run import timed
from kskel.encoders import block_specs


def official_blocks(in_channels=3, base_width=16, hidden_dim=256):
    """(C_in, C_out, stride, residual) of the 10 blocks, FACTS.md 2.2:
    residual None (block 0), "identity" or "conv" (1x1 conv + BN)."""
    blocks, cin = [], in_channels
    for cout, stride, residual in block_specs(base_width, hidden_dim):
        if not residual:
            kind = None
        elif cin == cout and stride == 1:
            kind = "identity"
        else:
            kind = "conv"
        blocks.append((cin, cout, stride, kind))
        cin = cout
    return blocks


def build_encoder(torch, joints=25, partitions=3, dropout=0.5):
    """The official ST-GCN with the pretraining head, as a `torch.nn.Module`."""
    nn = torch.nn

    class GraphConv(nn.Module):
        def __init__(self, cin, cout):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout * partitions, 1)

        def forward(self, x, adjacency):
            x = self.conv(x)
            n, kc, t, v = x.shape
            x = x.view(n, partitions, kc // partitions, t, v)
            return torch.einsum("nkctv,kvw->nctw", x, adjacency).contiguous()

    class Block(nn.Module):
        def __init__(self, cin, cout, stride, residual, rate):
            super().__init__()
            self.gcn = GraphConv(cin, cout)
            self.tcn = nn.Sequential(
                nn.BatchNorm2d(cout),
                nn.ReLU(),
                nn.Conv2d(cout, cout, (9, 1), (stride, 1), (4, 0)),
                nn.BatchNorm2d(cout),
                nn.Dropout(rate),
            )
            if residual == "conv":
                self.residual = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, (stride, 1)), nn.BatchNorm2d(cout)
                )
            else:
                self.residual = residual

        def forward(self, x, adjacency):
            if self.residual is None:
                res = 0
            elif self.residual == "identity":
                res = x
            else:
                res = self.residual(x)
            return torch.relu(self.tcn(self.gcn(x, adjacency)) + res)

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer(
                "adjacency", torch.rand(partitions, joints, joints) / joints
            )
            self.data_bn = nn.BatchNorm1d(3 * joints)
            blocks = official_blocks()
            self.blocks = nn.ModuleList(
                Block(cin, cout, stride, residual, 0.0 if i == 0 else dropout)
                for i, (cin, cout, stride, residual) in enumerate(blocks)
            )
            self.importance = nn.ParameterList(
                nn.Parameter(torch.ones(partitions, joints, joints))
                for _ in blocks
            )
            self.fc = nn.Sequential(
                nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 128)
            )

        def forward(self, x):
            n, c, t, v, m = x.shape
            x = x.permute(0, 4, 3, 1, 2).contiguous().view(n * m, v * c, t)
            x = self.data_bn(x)
            x = x.view(n, m, v, c, t).permute(0, 1, 3, 4, 2).contiguous()
            x = x.view(n * m, c, t, v)
            for block, importance in zip(self.blocks, self.importance):
                x = block(x, self.adjacency * importance)
            x = x.mean(dim=(2, 3)).view(n, m, -1).mean(dim=1)
            return self.fc(x)

    return Encoder()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=0, help="0: PyTorch's default"
    )
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    encoder = build_encoder(torch).train()
    inputs = torch.from_numpy(
        np.random.default_rng(0)
        .normal(size=(args.batch_size, 3, 50, 25, 2))
        .astype("float32")
    )

    def forward():
        with torch.no_grad():
            encoder(inputs)

    def forward_backward():
        encoder.zero_grad(set_to_none=True)
        encoder(inputs).square().mean().backward()

    forward_s = timed(forward, args.repeats)
    forward_backward_s = timed(forward_backward, args.repeats)
    per_sample = flops.encoder_flops()
    figures = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    for name, seconds, passes in (
        ("encoder_forward", forward_s, 1),
        ("encoder_forward_backward", forward_backward_s, 3),
    ):
        rate = args.batch_size / seconds
        figures[name] = {
            "samples_per_s": round(rate, 2),
            "gflops": round(rate * passes * per_sample / 1e9, 1),
        }
        print(
            f"official-form encoder {name:26s} {rate:7.2f} samples/s "
            f"{figures[name]['gflops']:6.1f} GFLOP/s"
        )
    bound = args.batch_size / (3 * forward_s + 3 * forward_backward_s)
    figures["actclr_step_upper_bound_samples_per_s"] = round(bound, 2)
    figures["peak_memory_mb"] = round(peak_memory_mb())
    print(f"ActCLR step, encoder passes alone: at most {bound:.2f} samples/s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
