import torch

from facerecon.morphable.layout import BFM09_LAYOUT, CoeffLayout


def test_bfm09_layout_matches_paper():
    s = BFM09_LAYOUT.slices()
    assert BFM09_LAYOUT.size == 257
    assert (s["id_coeff"], s["exp_coeff"], s["tex_coeff"]) == (
        slice(0, 80),
        slice(80, 144),
        slice(144, 224),
    )
    assert (s["angles"], s["gamma"], s["trans"]) == (
        slice(224, 227),
        slice(227, 254),
        slice(254, 257),
    )


def test_split_join_round_trip():
    layout = CoeffLayout(40, 10, 12)
    x = torch.randn(4, layout.size)
    parts = layout.split(x)
    assert parts["gamma"].shape == (4, 27)
    assert torch.equal(layout.join(parts), x)
