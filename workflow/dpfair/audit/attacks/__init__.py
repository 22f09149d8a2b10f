"""Built-in attacks; importing this package registers them (one module each)."""

from dpfair.audit.attacks import loss, one_run, rmia  # noqa: F401
