"""Every use of Ray's internals in rlp_tune, in one place. Written against Ray 2.60.0 (RAY_WRITTEN_FOR).

    from rlp_tune.tune._ray_compat import loopback_only, node_ip_kwargs
    loopback_only(); ray.init(num_cpus=2, **node_ip_kwargs("127.0.0.1"))

A sweep reads none of Tune's saved state (its state is its ledger, tune/ledger.py), so nothing here
parses Tune's files.

Each function below is here because Ray 2.60 has no public door for what it does (the installed
source was searched; the reason is written at each). tests/test_ray_compat.py checks every one
against the installed Ray, so an upgrade that breaks one fails there, not in a sweep. pyproject
pins ray to the range these were checked on; widen it only after that test file passes on the new
version (and update RAY_WRITTEN_FOR). Nothing else under rlp_tune/ may touch a private Ray name.
"""
from __future__ import annotations

import os
import sys

RAY_WRITTEN_FOR = "2.60.0"


def loopback_only() -> None:
    """Make an embedded (single-machine) Ray advertise 127.0.0.1, not the interface address.

    Ray reads RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER once, into `ray._private.ray_constants.ENABLE_RAY_CLUSTER`,
    when it is imported; the environment variable reaches the processes Ray starts, the module
    constant covers a Ray imported already (no public setting exists). It also keeps other
    machines from joining, which is what an embedded cluster wants."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    if "ray" in sys.modules:
        from ray._private import ray_constants
        ray_constants.ENABLE_RAY_CLUSTER = False


def node_ip_kwargs(ip: str) -> dict[str, str]:
    """`ray.init(**node_ip_kwargs("127.0.0.1"))`: the address the started head node binds and advertises.
    `ray.init` takes it only as the underscore argument `_node_ip_address` (the CLI's `ray start
    --node-ip-address` has no ray.init twin)."""
    return {"_node_ip_address": ip}
