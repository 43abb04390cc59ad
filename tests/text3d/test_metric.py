"""R-precision: exact counting with a fixed classifier, and a classifier that learns colours from a few renders."""
import pytest
import torch

from polydiff.domains.text3d import data
from polydiff.domains.text3d.metric import ShapeColorClassifier, parse_prompt, r_precision, train_classifier


class _Fixed(ShapeColorClassifier):
    """Predicts colour = round(mean red * 5), shape = round(mean green * 6): exact, known answers."""

    def forward(self, images):
        c = (images[:, 0].mean(dim=(1, 2)) * 5).round().long()
        s = (images[:, 1].mean(dim=(1, 2)) * 6).round().long()
        return (torch.nn.functional.one_hot(c, self.n_colors).float(), torch.nn.functional.one_hot(s, self.n_shapes).float())


def test_r_precision_counts_exactly():
    model = _Fixed(len(data.COLOR_NAMES), len(data.shape_classes()))
    classes = data.shape_classes()
    def views(color_idx, shape_idx, n):
        img = torch.zeros(n, 3, 4, 4)
        img[:, 0] = color_idx / 5
        img[:, 1] = shape_idx / 6
        return img
    red, mug = data.COLOR_NAMES.index("red"), classes.index("mug")
    blue, chair = data.COLOR_NAMES.index("blue"), classes.index("chair")
    renders = [torch.cat([views(red, mug, 3), views(blue, mug, 1)]), views(blue, classes.index("lamp"), 4)]
    out = r_precision(model, renders, [("red", "mug"), ("blue", "chair")])
    assert out == {"color": 7 / 8, "shape": 4 / 8, "both": 3 / 8}
    assert chair != classes.index("lamp") and red != blue


def test_parse_prompt():
    assert parse_prompt("A red mug") == ("red", "mug")
    with pytest.raises(ValueError, match="one colour"):
        parse_prompt("a teal mug")


def test_classifier_learns_colours(tmp_path, monkeypatch):
    monkeypatch.setenv("POLYDIFF_CACHE", str(tmp_path))
    cfg = data.RenderSetConfig(n_per_class=1, views_per_shape=4, size=16, voxel_resolution=24, n_samples=24, seed=5)
    d = data.load_render_set(cfg)
    model = train_classifier(d["images"], d["color"], d["shape"], steps=80, batch=28, width=8, seed=0)
    with torch.no_grad():
        c_logits, s_logits = model(d["images"].float() / 255)
    assert (c_logits.argmax(-1) == d["color"]).float().mean() > 0.9
    assert s_logits.shape == (len(d["shape"]), len(data.shape_classes()))
