"""The shipped prior works out of the box: it loads without --run and paints the colour a prompt asks for."""
import pytest
import torch

from polydiff.domains.text3d.data import BACKGROUND, COLORS


@pytest.fixture(scope="module")
def prior(load_shipped):
    return load_shipped("text3d")


def _foreground_colour(images: torch.Tensor) -> torch.Tensor:
    """Mean colour [3] of the pixels that differ clearly from the background, over images [B, 3, S, S] in [0, 1]."""
    pixels = images.permute(0, 2, 3, 1).reshape(-1, 3)
    fg = (pixels - torch.tensor(BACKGROUND)).abs().sum(-1) > 0.3
    assert fg.float().mean() > 0.05, "the prior drew (almost) nothing but background"
    return pixels[fg].mean(0)


@pytest.mark.parametrize("colour, shape", [("red", "mug"), ("blue", "chair"), ("green", "table")])
def test_prior_images_take_the_prompted_colour(prior, colour: str, shape: str) -> None:
    out = prior.sample(4, prompt=f"a {colour} {shape}", images=True, steps=10, seed=0)
    mean = _foreground_colour(out["images"])
    nearest = min(COLORS, key=lambda name: float((torch.tensor(COLORS[name]) - mean).norm()))
    assert nearest == colour, f"mean foreground colour {mean.tolist()} is nearest to {nearest}"
