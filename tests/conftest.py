"""Shared test set-up: offscreen Qt, a fixed torch thread count, tiny everything."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


# ------------------------------------------------------------------------------------- shared fixtures
from collections.abc import Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
from helpers import single_thread, tiny_cat, train_tiny  # noqa: E402
from nukestub.fixtures import nuke_session  # noqa: E402, F401  (the stand-in Nuke session, for every module)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny MSRN trained for 40 steps on the task of ``helpers.write_pairs`` (not the identity)."""
    return train_tiny(tmp_path_factory.mktemp("trained") / "trained.cat")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_cat(tmp_path_factory.mktemp("tiny") / "tiny.cat")


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread, for modules of many tiny tensors (see helpers.single_thread)."""
    with single_thread():
        yield
