"""A small CNN digit classifier on normalised log-mels: the judge of DiffWave's SC09 protocol (accuracy, FID, IS ...).

Its penultimate layer (after global pooling and one hidden layer) is the feature space of FID and NDB.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                         nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(), nn.MaxPool2d(2))


class DigitClassifier(nn.Module):
    """Three conv blocks, global average pooling, a ``feature_dim`` hidden layer (the feature space), logits."""

    def __init__(self, num_classes: int = 10, width: int = 16, feature_dim: int = 128, dropout: float = 0.3) -> None:
        super().__init__()
        self.hparams = {"num_classes": num_classes, "width": width, "feature_dim": feature_dim, "dropout": dropout}
        self.body = nn.Sequential(_block(1, width), _block(width, 2 * width), _block(2 * width, 4 * width))
        self.hidden = nn.Linear(4 * width, feature_dim)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features [B, feature_dim] of normalised log-mels [B, n_mels, frames] or [B, 1, n_mels, frames]."""
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"DigitClassifier needs log-mels [B, n_mels, frames]; got shape {tuple(x.shape)}")
        return F.relu(self.hidden(self.body(x).mean((2, 3))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits [B, num_classes]."""
        return self.out(self.dropout(self.features(x)))

    def save(self, directory: str | Path) -> None:
        """Write ``classifier.safetensors`` and ``classifier.json`` into ``directory``."""
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(d / "classifier.safetensors"))
        (d / "classifier.json").write_text(json.dumps(self.hparams, indent=2))

    @classmethod
    def load(cls, directory: str | Path) -> "DigitClassifier":
        """Read a classifier written by ``save``."""
        from safetensors.torch import load_file

        d = Path(directory)
        if not (d / "classifier.json").is_file():
            raise FileNotFoundError(f"{d}: no classifier.json; train one first (polydiff audio evaluate trains it)")
        model = cls(**json.loads((d / "classifier.json").read_text()))
        model.load_state_dict(load_file(str(d / "classifier.safetensors")))
        return model.eval()


def _augment(x: torch.Tensor, gen: torch.Generator, max_shift: int = 6) -> torch.Tensor:
    """Random circular time shift and a random level offset per clip (the data are normalised log-mels)."""
    shifts = torch.randint(-max_shift, max_shift + 1, (x.shape[0],), generator=gen).tolist()
    x = torch.stack([torch.roll(row, s, dims=-1) for row, s in zip(x, shifts)])
    return x + 0.1 * torch.randn(x.shape[0], 1, 1, generator=gen)


def train_classifier(mels: torch.Tensor, labels: torch.Tensor, *, num_classes: int = 10, epochs: int = 15,
                     batch: int = 64, lr: float = 2e-3, seed: int = 0, width: int = 16,
                     log: bool = False) -> DigitClassifier:
    """Fit the classifier on normalised log-mels [N, n_mels, frames] with AdamW and a cosine learning rate."""
    if mels.shape[0] != labels.shape[0] or mels.shape[0] == 0:
        raise ValueError(f"need as many labels as clips (> 0); got {mels.shape[0]} clips, {labels.shape[0]} labels")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = DigitClassifier(num_classes, width=width)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-2)
    steps = epochs * ((len(mels) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(mels), generator=gen)
        total = 0.0
        for i in range(0, len(mels), batch):
            idx = perm[i:i + batch]
            loss = F.cross_entropy(model(_augment(mels[idx], gen)), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * len(idx)
        if log:
            print(f"classifier epoch {epoch + 1}/{epochs}: loss {total / len(mels):.4f}")
    return model.eval()


@torch.no_grad()
def predict(model: DigitClassifier, mels: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Class probabilities [N, C] and penultimate features [N, D] of normalised log-mels."""
    model.eval()
    probs, feats = [], []
    for i in range(0, len(mels), batch):
        f = model.features(mels[i:i + batch])
        feats.append(f)
        probs.append(model.out(f).softmax(-1))
    return torch.cat(probs), torch.cat(feats)
