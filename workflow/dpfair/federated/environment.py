"""Flower and Ray without telemetry and without a socket beyond loopback, set before either is imported.

Both send usage statistics by default: Flower reads ``FLWR_TELEMETRY_ENABLED`` when it is first imported,
Ray reads ``RAY_USAGE_STATS_ENABLED`` when it starts. Ray binds its services to the address it would
reach other nodes by (on Linux the host's outward interface, all interfaces for some); with
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` it treats the machine as a single node and binds to loopback,
as it always does on macOS and Windows. The dashboard is off in the simulation's ``init_args``.

One more way out: even with usage statistics off, Ray's dashboard head (which runs in a minimal mode when
the dashboard is off) asks the cloud metadata services (``169.254.169.254``, ``metadata.google.internal``)
over HTTP which cloud it runs on. :func:`isolated` therefore routes every HTTP(S) request of the
simulation's processes to a closed loopback port (``HTTP_PROXY``, with ``NO_PROXY`` for loopback itself,
so Ray's own gRPC between its processes is unaffected), for as long as the simulation starts them.
:func:`check_quiet` confirms all of it on the imported modules, so a process that imported Flower or Ray
before dpfair did is refused rather than trusted.
"""

from __future__ import annotations

import contextlib
import os

from dpfair.errors import ConfigError

QUIET_ENV = {
    "FLWR_TELEMETRY_ENABLED": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_DEDUP_LOGS": "0",
}

#: HTTP(S) of the simulation's processes goes to port 9 of loopback (discard: nothing listens, refused at once).
NO_EXIT_ENV = {
    **{k: "http://127.0.0.1:9" for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")},
    **{k: "localhost,127.0.0.1,::1" for k in ("NO_PROXY", "no_proxy")},
}


@contextlib.contextmanager
def isolated():
    """:data:`NO_EXIT_ENV` in this process while the block runs (Ray's processes inherit it), then as it was."""
    saved = {k: os.environ.get(k) for k in NO_EXIT_ENV}
    os.environ.update(NO_EXIT_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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
