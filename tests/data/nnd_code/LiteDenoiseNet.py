# A LiteDenoiseNet model file in the NN Dataset contract, written for nnsearch's tests: the published
# network (widths 16-256, one residual block per level, concat skips, stride-2 downsampling, global
# residual, clamp) under names and a layout of its own, as a model file from elsewhere would have them.
import torch
from torch import nn


def supported_hyperparameters():
    return {"lr"}


class Squeeze(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.reduce = nn.Conv2d(width, width // 2, kernel_size=3, padding=1)
        self.expand = nn.Conv2d(width // 2, width, kernel_size=3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.expand(self.relu(self.reduce(x))) + x)


class Net(nn.Module):
    def __init__(self, in_shape, out_shape, prm, device):
        super().__init__()
        self.device = device
        widths = [16 * 2 ** i for i in range(5)]
        self.first = nn.Conv2d(in_shape[1], widths[0], 3, 1, 1)
        self.enc = nn.ModuleList(Squeeze(w) for w in widths[:-1])
        self.pool = nn.ModuleList(nn.Sequential(nn.Conv2d(a, b, 3, 2, 1), nn.ReLU(inplace=True))
                                  for a, b in zip(widths, widths[1:]))
        self.middle = Squeeze(widths[-1])
        self.grow = nn.Upsample(scale_factor=2, mode="nearest")
        self.merge = nn.ModuleList(nn.Conv2d(b + a, a, 3, 1, 1) for a, b in zip(widths, widths[1:]))
        self.dec = nn.ModuleList(Squeeze(w) for w in widths[:-1])
        self.last = nn.Conv2d(widths[0], in_shape[1], 3, 1, 1)
        self.lr = prm.get("lr", 1e-4)
        self.to(device)

    def train_setup(self, prm):
        self.optimizer = torch.optim.Adam(self.parameters(), lr=prm.get("lr", self.lr))
        self.criteria = (nn.L1Loss(),)

    def learn(self, train_data):
        for noisy, clean in train_data:
            self.optimizer.zero_grad()
            loss = self.criteria[0](self(noisy.to(self.device)), clean.to(self.device))
            loss.backward()
            self.optimizer.step()

    def forward(self, x):
        skips, h = [], self.first(x)
        for block, down in zip(self.enc, self.pool):
            h = block(h)
            skips.append(h)
            h = down(h)
        h = self.middle(h)
        for level in reversed(range(len(skips))):
            h = self.dec[level](self.merge[level](torch.cat([self.grow(h), skips[level]], 1)))
        return torch.clamp(self.last(h) + x, 0.0, 1.0)
