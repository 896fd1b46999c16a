"""Fixtures of the namespace tier: the two-namespace lab (swlab.py)."""

from __future__ import annotations

import pytest

from swlab import lab_namespaces


@pytest.fixture
def lab(seawall_env):
    """A client and a server namespace joined by a veth pair, with the
    seawall CLI pointed at this test's own bpffs folder and journal.
    Both namespaces are removed afterwards, even when the test fails."""
    with lab_namespaces(seawall_env.pin_root, seawall_env.state_dir) as lab:
        yield lab
