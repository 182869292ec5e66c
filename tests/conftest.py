"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

# MovieLens-100K lives beside the repository (its licence forbids copying it in): ../shared/data
ML100K_DIR = Path(__file__).resolve().parents[1].parent / "shared/data/ml-100k"


@pytest.fixture
def ml100k_dir() -> Path:
    """The MovieLens-100K folder (u.data, u.item, ...); the test is skipped when it is absent."""
    if not (ML100K_DIR / "u.data").is_file() or not (ML100K_DIR / "u.item").is_file():
        pytest.skip(f"MovieLens-100K not found at {ML100K_DIR}")
    return ML100K_DIR
