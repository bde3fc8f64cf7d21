"""The same Siamese network in PyTorch, used only as a comparator in benchmarks.

Architecture, loss (BCE with logits + Keras-style L2 added to the loss) and
optimizer (Adam, beta1 = 0.5, eps = 1e-7) match minisiamese's baseline.
"""
import torch
import torch.nn.functional as F
from torch import nn


class Tower(nn.Module):
    def __init__(self, filters=(64, 128, 128, 256), kernels=(10, 7, 4, 4), dense_units=4096, size=105):
        super().__init__()
        convs, c, s = [], 1, size
        for k, (f, kk) in enumerate(zip(filters, kernels)):
            convs.append(nn.Conv2d(c, f, kk))
            c, s = f, s - kk + 1
            if k < len(filters) - 1:
                s //= 2
        self.convs = nn.ModuleList(convs)
        self.dense = nn.Linear(c * s * s, dense_units)

    def forward(self, x):
        for k, conv in enumerate(self.convs):
            x = F.relu(conv(x))
            if k < len(self.convs) - 1:
                x = F.max_pool2d(x, 2)
        return torch.sigmoid(self.dense(torch.flatten(x, 1)))


class SiamesePeer(nn.Module):
    def __init__(self, dense_units=4096, l2_conv=1e-3, l2_dense=1e-4):
        super().__init__()
        self.tower = Tower(dense_units=dense_units)
        self.out = nn.Linear(dense_units, 1)
        self.l2_conv, self.l2_dense = l2_conv, l2_dense

    def forward(self, x1, x2):
        n = x1.shape[0]
        h = self.tower(torch.cat([x1, x2]))
        return self.out(torch.abs(h[:n] - h[n:]))[:, 0]

    def loss(self, x1, x2, y):
        loss = F.binary_cross_entropy_with_logits(self(x1, x2), y)
        for conv in self.tower.convs:
            loss = loss + self.l2_conv * conv.weight.pow(2).sum()
        for lin in (self.tower.dense, self.out):
            loss = loss + self.l2_dense * lin.weight.pow(2).sum()
        return loss


def make_step(model, lr=1e-4):
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.999), eps=1e-7)

    def step(x1, x2, y):
        opt.zero_grad(set_to_none=True)
        loss = model.loss(x1, x2, y)
        loss.backward()
        opt.step()
        return loss

    return step
