"""Shared fixtures: the encoder (loaded once) and the embedded broker."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def encoder():
    from models.encoder import TextEncoder

    return TextEncoder(device="cpu")
