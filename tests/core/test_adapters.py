"""LoRA adapters (core/adapters.py): exact at init, only adapters train, save/load round trip, merge is exact."""
from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from polydiff.core.adapters import add_lora, load_lora, lora_parameters, lora_state_dict, merge_lora


class Net(nn.Module):
    """Linear, Conv1d, Conv2d, a LayerNorm and an attention block whose out_proj weight is read directly."""

    def __init__(self) -> None:
        super().__init__()
        self.conv2 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv1 = nn.Conv1d(8, 8, 3, padding=1, groups=2)
        self.norm = nn.LayerNorm(8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv2(x).mean(-1)  # [B, 8, H]
        h = self.conv1(h).transpose(1, 2)  # [B, H, 8]
        h = self.norm(h)
        h = h + self.attn(h, h, h, need_weights=False)[0]
        return self.head(h)


def _net(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    return Net().double()


def _x() -> torch.Tensor:
    return torch.randn(5, 3, 6, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def _train_a_little(net: nn.Module, steps: int = 5) -> None:
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    for _ in range(steps):
        opt.zero_grad()
        net(_x()).pow(2).mean().backward()
        opt.step()


def test_adapted_module_equals_base_exactly_at_init():
    base, net = _net(), _net()
    names = add_lora(net, rank=2, alpha=4)
    assert set(names) == {"conv2", "conv1", "attn.out_proj", "head"}
    assert torch.equal(net(_x()), base(_x()))


def test_only_adapter_parameters_require_grad_and_train():
    base, net = _net(), _net()
    add_lora(net, rank=2)
    trainable = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    assert len(trainable) == 2 * 4 and {id(p) for p in lora_parameters(net)} == {
        id(p) for p in net.parameters() if p.requires_grad}
    _train_a_little(net)
    frozen = {n.replace(".parametrizations.weight.original", ".weight"): p for n, p in net.named_parameters()
              if not p.requires_grad}
    for name, p in base.named_parameters():
        assert torch.equal(frozen[name], p), name
    assert not torch.equal(net(_x()), base(_x()))


def test_targets_by_name_pattern_and_errors():
    net = _net()
    assert add_lora(net, rank=1, targets=("attn.*", "head")) == ["attn.out_proj", "head"]
    with pytest.raises(ValueError, match="no layer"):
        add_lora(_net(), rank=1, targets=("nothing.*",))
    with pytest.raises(ValueError, match="rank"):
        add_lora(_net(), rank=0)


def test_state_dict_holds_only_adapters_and_round_trips_through_a_file(tmp_path):
    net = _net()
    add_lora(net, rank=2, alpha=3)
    _train_a_little(net)
    state = lora_state_dict(net)
    assert set(state) == {f"{n}.{k}" for n in ("conv2", "conv1", "attn.out_proj", "head")
                          for k in ("lora_A", "lora_B", "lora_alpha")}
    save_file(state, str(tmp_path / "adapter.safetensors"))
    fresh = _net()  # the base again, never adapted
    assert load_lora(fresh, load_file(str(tmp_path / "adapter.safetensors")))
    assert torch.equal(fresh(_x()), net(_x()))
    again = _net()
    add_lora(again, rank=2, alpha=3)
    load_lora(again, state)  # into existing adapters
    assert torch.equal(again(_x()), net(_x()))


def test_load_refuses_a_mismatched_adapter():
    net = _net()
    add_lora(net, rank=2)
    other = _net()
    add_lora(other, rank=3)
    with pytest.raises(ValueError, match="shape"):
        load_lora(other, lora_state_dict(net))
    with pytest.raises(KeyError, match="missing"):
        load_lora(_net(), {"missing.lora_A": torch.zeros(1, 1), "missing.lora_B": torch.zeros(1, 1)})


def test_merge_equals_unmerged_and_restores_plain_modules():
    net = _net()
    add_lora(net, rank=2, alpha=2)
    _train_a_little(net)
    before = net(_x())
    merged = copy.deepcopy(net)
    assert len(merge_lora(merged)) == 4
    assert (merged(_x()) - before).abs().max() < 1e-6
    assert set(merged.state_dict()) == set(_net().state_dict())
    assert not lora_state_dict(merged)


def test_float32_merge_within_1e_6():
    torch.manual_seed(0)
    net = Net()
    add_lora(net, rank=4)
    with torch.no_grad():
        for p in lora_parameters(net):
            p.normal_(0, 0.1)
    x = _x().float()
    before = net(x)
    merge_lora(net)
    assert (net(x) - before).abs().max() < 1e-6
