"""Small reference modules for examples, tests and benchmarks."""

from torch import nn

__all__ = ["MLP"]


class MLP(nn.Module):
    """A one-hidden-layer perceptron (EvoMAL's MLP has the same shape)."""

    def __init__(self, n_in=64, n_hidden=128, n_out=10):
        super().__init__()
        self.hidden = nn.Linear(n_in, n_hidden)
        self.output = nn.Linear(n_hidden, n_out)

    def forward(self, x):
        return self.output(nn.functional.relu(self.hidden(x)))
