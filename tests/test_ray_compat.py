"""Each use of Ray's internals (rlp_tune/tune/_ray_compat.py) checked against the installed Ray.

    .venv/bin/python -m pytest tests/test_ray_compat.py -q            # one small local Ray run (-m ray)

If one of these fails after a Ray upgrade, fix that function in _ray_compat.py (and its pin in
pyproject.toml), not its callers.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from rlp_tune.tune import _ray_compat as compat

ROOT = Path(__file__).resolve().parents[1]


def test_installed_ray_is_the_one_the_compat_file_was_written_for():
    import ray
    major_minor = compat.RAY_WRITTEN_FOR.rsplit(".", 1)[0]
    assert ray.__version__.startswith(major_minor + "."), (ray.__version__, compat.RAY_WRITTEN_FOR)
    pin = next(line for line in (ROOT / "pyproject.toml").read_text().splitlines() if '"ray[' in line)
    assert f">={major_minor}" in pin and "<" in pin, pin       # pyproject pins the range checked here


def test_loopback_only_makes_ray_pick_the_loopback_address(monkeypatch):
    import ray
    from ray._private import ray_constants
    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", True)     # as on a Linux host
    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)
    compat.loopback_only()
    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0" and ray_constants.ENABLE_RAY_CLUSTER is False
    if not ray.is_initialized():       # without a running node Ray derives "this node's address" from it
        assert ray.util.get_node_ip_address() == "127.0.0.1"


@pytest.mark.ray
def test_an_embedded_node_binds_the_loopback_address():
    """One small local Ray: the node binds and advertises 127.0.0.1 (node_ip_kwargs + loopback_only)."""
    import ray
    compat.loopback_only()
    ray.init(num_cpus=1, **compat.node_ip_kwargs("127.0.0.1"), include_dashboard=False,
             log_to_driver=False, configure_logging=False)
    try:
        assert ray.util.get_node_ip_address() == "127.0.0.1"
        assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    finally:
        ray.shutdown()
