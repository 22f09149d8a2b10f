"""Flower and Ray without telemetry and without a socket beyond loopback, set before either is imported.

Both send usage statistics by default: Flower reads ``FLWR_TELEMETRY_ENABLED`` when it is first imported,
Ray reads ``RAY_USAGE_STATS_ENABLED`` when it starts. Ray binds its services to the address it would
reach other nodes by (on Linux the host's outward interface, all interfaces for some); with
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` it treats the machine as a single node and binds to loopback,
as it always does on macOS and Windows. The dashboard is off in the simulation's ``init_args``.
:func:`check_quiet` confirms all of it on the imported modules, so a process that imported Flower or Ray
before dpfair did is refused rather than trusted.
"""

from __future__ import annotations

import os

from dpfair.errors import ConfigError

QUIET_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_DEDUP_LOGS": "0",
}


def quiet() -> None:
    """Set :data:`QUIET_ENV` in this process (inherited by Ray's processes)."""
    os.environ.update(QUIET_ENV)


def check_quiet() -> None:
    """Raise unless Flower's telemetry, Ray's usage statistics and Ray's multi-node binding are off as imported."""
    from flwr.supercore import telemetry
    from ray._common.usage import usage_lib
    from ray._private import ray_constants

    problems = []
    if telemetry.FLWR_TELEMETRY_ENABLED != "0":
        problems.append("Flower telemetry is on (flwr was imported before FLWR_TELEMETRY_ENABLED=0 was set)")
    if ray_constants.ENABLE_RAY_CLUSTER:
        problems.append("Ray would bind beyond loopback (ray was imported before RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0)")
    if usage_lib.usage_stats_enabled():
        problems.append("Ray usage statistics are on")
    if problems:
        raise ConfigError(
            "federated run refused: " + "; ".join(problems) + ". Import dpfair.federated before flwr and ray, "
            f"or export {' '.join(f'{k}={v}' for k, v in QUIET_ENV.items())}"
        )


quiet()
