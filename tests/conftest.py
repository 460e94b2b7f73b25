"""Fixtures shared by the tests; plain helpers are in ``helpers.py``."""
from pathlib import Path

import pytest

from helpers import all_bones, write_case


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    """10 patients with two labeled images each and 2 unlabeled test images."""
    for p in range(1, 11):
        write_case(tmp_path, f'ID{p:03d}', f'image16611308{p:05d}', annotations=all_bones())
        write_case(tmp_path, f'ID{p:03d}', f'image16611309{p:05d}_R', annotations=all_bones())
    for p in (11, 12):
        write_case(tmp_path, f'ID{p:03d}', f'image16613191{p:05d}', split='test')
    return tmp_path
