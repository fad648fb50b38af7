"""One forward pass over several views with BatchNorm statistics per view (ssl_core.views)."""

from __future__ import annotations

import copy

import pytest
import timm
import torch
from torch import nn

from ssl_core.methods.per_view_batchnorm import forward_views, views_in_batch


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)
    )


def _views(n: int = 2, batch: int = 4) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    # Views with different means: statistics over both would differ from each view's own.
    return [torch.randn(batch, 3, 8, 8, generator=generator) + 3.0 * i for i in range(n)]


@pytest.mark.parametrize("n", [2, 3])
def test_one_pass_equals_separate_passes_outputs_gradients_and_running_stats(n) -> None:
    joint, separate = _net(), _net()
    views = _views(n)
    outputs = forward_views(joint, views)
    expected = [separate(v) for v in views]
    for got, want in zip(outputs, expected, strict=True):
        torch.testing.assert_close(got, want)
    sum(o.square().sum() for o in outputs).backward()
    sum(o.square().sum() for o in expected).backward()
    for (name, a), b in zip(joint.named_parameters(), separate.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=name)
    # Running statistics moved once per view, in view order, as separate passes do.
    torch.testing.assert_close(joint[1].running_mean, separate[1].running_mean)
    torch.testing.assert_close(joint[1].running_var, separate[1].running_var)
    assert joint[1].num_batches_tracked.item() == n


def test_a_plain_concatenated_pass_differs() -> None:
    # The check above could not fail if BatchNorm ignored how the batch is made up.
    net = _net()
    views = _views()
    joint = net(torch.cat(views))[:4]
    assert not torch.allclose(joint, _net()(views[0]))


def test_timm_batchnorm_act_layers_are_split_too() -> None:
    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", pretrained=False, num_classes=0)
    twin = copy.deepcopy(model)
    views = [v.repeat(1, 1, 2, 2) for v in _views()]
    for got, want in zip(forward_views(model, views), [twin(v) for v in views], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_layers_keep_state_dict_keys_and_behave_as_before_outside() -> None:
    net = _net()
    keys = list(net.state_dict())
    forward_views(net, _views())
    assert list(net.state_dict()) == keys
    assert isinstance(net[1], nn.BatchNorm2d) and net[1].views_in_batch == 1
    single = _views(1)[0]
    torch.testing.assert_close(net(single), _net_after_same_updates()(single))


def _net_after_same_updates() -> nn.Module:
    net = _net()
    for view in _views():
        net(view)
    return net


def test_eval_mode_and_views_of_other_shapes_go_through_whole() -> None:
    net = _net().eval()
    views = _views()
    for got, want in zip(forward_views(net, views), [_net().eval()(v) for v in views], strict=True):
        torch.testing.assert_close(got, want)
    uneven = [torch.randn(4, 3, 8, 8), torch.randn(2, 3, 8, 8)]
    outputs = forward_views(_net(), uneven)
    assert [o.shape[0] for o in outputs] == [4, 2]


def test_batch_is_restored_after_an_error() -> None:
    net = _net()
    with pytest.raises(RuntimeError), views_in_batch(net, 2):
        raise RuntimeError("boom")
    assert net[1].views_in_batch == 1
