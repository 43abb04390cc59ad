"""bf16 autocast of the network while sampling, on CPU or CUDA: close to float32, scoped, and off by default."""
import torch
from torch import nn

from polydiff.core.denoisers import Denoiser, reduced_precision


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(9, 64), nn.SiLU(), nn.Linear(64, 8))
        self.dtypes: list[torch.dtype] = []

    def forward(self, x, c_noise, cond=None):
        h = self.body(torch.cat([x, c_noise[:, None]], 1))
        self.dtypes.append(h.dtype)
        return h


def test_bf16_runs_the_network_in_bf16_and_stays_close():
    torch.manual_seed(0)
    den = Denoiser(Net(), sigma_data=0.5)
    x, sigma = torch.randn(256, 8), torch.rand(256) * 3 + 0.1
    ref = den(x, sigma)
    with reduced_precision(den, "bf16"):
        low = den(x, sigma)
    assert den.net.dtypes == [torch.float32, torch.bfloat16] and low.dtype == torch.float32
    assert 0 < float((low - ref).norm() / ref.norm()) < 0.02
    assert den.autocast is None and torch.equal(den(x, sigma), ref)
    with reduced_precision(den, "fp32"):
        assert torch.equal(den(x, sigma), ref)


def test_other_denoisers_pass_through():
    fn = lambda x, s, c=None: x  # noqa: E731
    with reduced_precision(fn, "bf16") as same:
        assert same is fn
