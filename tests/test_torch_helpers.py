"""The shared torch helpers: one eval-mode context and one seeded-generator rule."""

import pytest
import torch
from torch import nn

from resdyn._torch import eval_mode, generator


def _net():
    return nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3), nn.Dropout(0.5),
                         nn.Sequential(nn.BatchNorm1d(3)))


def test_eval_mode_restores_every_submodule_flag():
    net = _net().train()
    net[1].eval()  # a frozen BatchNorm inside a training network: a mixed state
    before = [m.training for m in net.modules()]
    assert before == [True, True, False, True, True, True]
    with eval_mode(net) as inside:
        assert inside is net
        assert not any(m.training for m in net.modules())
    assert [m.training for m in net.modules()] == before


def test_eval_mode_restores_after_an_error():
    net = _net().train()
    with pytest.raises(RuntimeError, match="boom"), eval_mode(net):
        raise RuntimeError("boom")
    assert all(m.training for m in net.modules())


def test_eval_mode_gives_eval_outputs_and_keeps_statistics():
    torch.manual_seed(0)
    net = _net().train()
    x = torch.randn(8, 3)
    stats = net[1].running_mean.clone()
    with eval_mode(net), torch.no_grad():
        a, b = net(x), net(x)
    assert torch.equal(a, b)  # dropout off, running statistics used
    assert torch.equal(net[1].running_mean, stats)  # not updated in eval mode


def test_generator_from_int_and_from_generator():
    a = torch.randn(4, generator=generator(7))
    assert torch.equal(a, torch.randn(4, generator=torch.Generator().manual_seed(7)))
    g = torch.Generator().manual_seed(3)
    assert generator(g) is g  # passed through, so one stream threads through several calls
    first, second = torch.rand(2, generator=generator(g)), torch.rand(2, generator=generator(g))
    assert not torch.equal(first, second)
    assert generator(0).device == torch.device("cpu")


@pytest.mark.parametrize("bad", [None, True, 1.5, "0"])
def test_generator_refuses_other_seeds(bad):
    with pytest.raises(TypeError, match=r"seed must be an int or a torch.Generator.*seed=0"):
        generator(bad)
