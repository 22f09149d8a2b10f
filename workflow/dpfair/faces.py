"""Package faces that load their modules on first use.

A face lists a package's public names (``__all__``) and where each lives. Loading them lazily (PEP 562
module ``__getattr__``) keeps ``import dpfair.<package>.<module>`` as light as that module: the
Snakefile's parse imports the benchmark definition, which must not pull in torch or Opacus (Opacus
configures the root logger on import and doubles every line Snakemake prints).
"""

from __future__ import annotations

from importlib import import_module


def lazy_face(package: str, exports: dict[str, str]):
    """``(__all__, __getattr__, __dir__)`` for a package whose public names live in its submodules.

    Args:
        package: the package's ``__name__``.
        exports: public name → the submodule (relative to ``package``) that defines it.

    Example:
        >>> all_, getattr_, _ = lazy_face("dpfair.privacy", {"format_epsilon": "params"})
        >>> all_, getattr_("format_epsilon")(float("inf"))
        (['format_epsilon'], 'inf')
    """

    def __getattr__(name: str):
        if name in exports:
            return getattr(import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(exports)

    return sorted(exports), __getattr__, __dir__
