"""PlainCNN's pooling and padding options."""

import pytest
import torch

from geozoo.nets import PlainCNN


def _spatial_spread(padding_mode: str) -> float:
    """Largest spread over positions of any channel of the last stage, for a blank frame."""
    torch.manual_seed(0)
    net = PlainCNN(widths=(8, 16), dropout=0.0, padding_mode=padding_mode).eval()
    with torch.no_grad():
        features = net.features((torch.zeros(2, 1, 40, 40) - net.mean) / net.std)
    return float((features.amax((-2, -1)) - features.amin((-2, -1))).max())


def test_replicate_padding_keeps_a_blank_frame_uniform():
    assert _spatial_spread("replicate") < 1e-6
    # zero padding: the edge of the frame differs from the normalised background
    assert _spatial_spread("zeros") > 1e-2


def test_global_pool_and_padding_options():
    default = PlainCNN()
    assert isinstance(default.head[0], torch.nn.AdaptiveAvgPool2d)
    assert {m.padding_mode for m in default.modules() if isinstance(m, torch.nn.Conv2d)} == {
        "zeros"
    }
    net = PlainCNN(global_pool="max", padding_mode="replicate").eval()
    assert isinstance(net.head[0], torch.nn.AdaptiveMaxPool2d)
    assert {m.padding_mode for m in net.modules() if isinstance(m, torch.nn.Conv2d)} == {
        "replicate"
    }
    assert net(torch.rand(2, 1, 40, 40)).shape == (2, 10)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"global_pool": "mean"}, r"global_pool must be one of \('avg', 'max'\), got 'mean'"),
        ({"padding_mode": "circular"}, r"padding_mode must be one of .*got 'circular'"),
    ],
)
def test_bad_options_are_explained(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PlainCNN(**kwargs)
