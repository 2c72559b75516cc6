"""Fixtures of the lab's end-to-end tests (``lab_cli`` has their helpers)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="module")
def prefix(session_run_id: str) -> str:
    return f"pbt{session_run_id}"


@pytest.fixture(scope="module")
def shm_before() -> set[str]:
    return set(os.listdir("/dev/shm"))
