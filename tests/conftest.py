"""Shared fixtures: tiny local checkpoints built once per session, never downloaded."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tokenizer():
    from emergence.testing import train_tokenizer

    return train_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer):
    from emergence.testing import build_model

    return build_model(tmp_path_factory.mktemp("tiny") / "model", hidden=64, layers=2, tokenizer=tokenizer)


@pytest.fixture(scope="session")
def tiny_family_dir(tmp_path_factory):
    from emergence.testing import build_family

    return build_family(tmp_path_factory.mktemp("family") / "tinyfam")
