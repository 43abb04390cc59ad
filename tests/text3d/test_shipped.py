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


@pytest.fixture(scope="module")
def token_prior():
    from polydiff.domains.text3d.plugin import SHIPPED, make_domain
    from polydiff.plugins.runs import load_run

    return load_run(make_domain(), SHIPPED.parent / "prior-tokens64", "cpu")


@pytest.mark.parametrize("colour, shape", [("green", "chair"), ("purple", "mug")])
def test_token_prior_paints_held_out_pairs_in_their_colour(token_prior, colour: str, shape: str) -> None:
    """Pairs its render set never held: the colour still comes from the prompt."""
    out = token_prior.sample(4, prompt=f"a {colour} {shape}", images=True, steps=10, seed=0)
    assert out["images"].shape == (4, 3, 64, 64)
    mean = _foreground_colour(out["images"])
    nearest = min(COLORS, key=lambda name: float((torch.tensor(COLORS[name]) - mean).norm()))
    assert nearest == colour, f"mean foreground colour {mean.tolist()} is nearest to {nearest}"


def test_token_prior_draws_a_small_mug_smaller(token_prior) -> None:
    """The size word is read: same seeds, "a small green mug" covers far fewer pixels than "a green mug"."""
    def coverage(prompt: str) -> float:
        images = token_prior.sample(4, prompt=prompt, images=True, steps=10, seed=0)["images"]
        return float(((images - torch.tensor(BACKGROUND)[:, None, None]).abs().sum(1) > 0.3).float().mean())

    assert coverage("a small green mug") < 0.7 * coverage("a green mug")
