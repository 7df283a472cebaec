"""Shared fixtures: tiny, seeded configurations that train in well under a second."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from landscape.config import DataConfig, ModelConfig, RunConfig, TrainConfig


def tiny_config(**train: object) -> RunConfig:
    """vgg_tiny on a synthetic 3x8x8, 4-class set of 64 images, batch 16."""
    t = dict(steps=12, batch_size=16, lr=0.05, eval_every=5, checkpoint_every=4, log_every=3, device="cpu")
    t.update(train)
    return RunConfig(
        model=ModelConfig(name="vgg_tiny", norm="bn", num_classes=4),
        data=DataConfig(name="synthetic", synthetic_train=64, synthetic_test=32, image_size=8, num_classes=4),
        train=TrainConfig(**t),
    )


@pytest.fixture
def tiny() -> RunConfig:
    return tiny_config()


def replace_train(config: RunConfig, **changes: object) -> RunConfig:
    return dataclasses.replace(config, train=dataclasses.replace(config.train, **changes))


@pytest.fixture(autouse=True)
def _small_torch() -> None:
    # Two cores are shared with other work; one intra-op thread keeps timings sane.
    torch.set_num_threads(1)
