"""One way to print a number, an ε, a ratio, a link and a figure on the report.

Every table cell, sentence and template of the report formats through :func:`number`, so a value reads
the same wherever it appears: ``—`` for missing, ``∞`` for infinite, ``−`` for minus, trailing zeros
dropped, two significant digits where fixed decimals would show nothing.
"""

from __future__ import annotations

import base64
import io
import math
import numbers

import matplotlib.pyplot as plt


def number(value, digits: int = 3, *, signed: bool = False) -> str:
    """A value as the report prints it.

    Args:
        value: a number (anything else is printed with ``str``; None and NaN as ``—``).
        digits: decimals kept (then trailing zeros dropped); values below ``10**-digits`` or at least
            ``1e5`` in size get two significant digits instead.
        signed: print ``+`` for positive values (a change or a difference).

    Example:
        >>> number(-0.12345, signed=True), number(float("nan")), number(0.5), number(2e-5), number(12)
        ('−0.123', '—', '0.5', '2e-05', '12')
    """
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):+d}".replace("-", "−") if signed else str(int(value)).replace("-", "−")
    value = float(value)
    if math.isnan(value):
        return "—"
    if math.isinf(value):
        return ("+∞" if signed else "∞") if value > 0 else "−∞"
    if value != 0 and (abs(value) < 10**-digits or abs(value) >= 1e5):
        text = f"{value:+.2g}" if signed else f"{value:.2g}"
    else:
        text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
    return text.replace("-", "−") if "e" not in text else text


def epsilon_label(eps: float) -> str:
    """ε as the report names it: ``∞`` for non-private training, else the shortest form (``1``, ``0.5``)."""
    return "∞" if math.isinf(eps) else f"{eps:g}"


def ratio_label(value) -> str:
    """A ratio to the non-private reference as the report prints it.

    Example:
        >>> ratio_label(1.2345), ratio_label(2.0), ratio_label(float("nan"))
        ('1.23×', '2×', '—')
    """
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{number(float(value), 2)}×"


def safe_url(url) -> str | None:
    """``url`` when it is an absolute http(s) URL, else None: a dataset card cannot inject a script link.

    Example:
        >>> safe_url("https://physionet.org/x"), safe_url("javascript:alert(1)"), safe_url(" HTTP://a.org ")
        ('https://physionet.org/x', None, 'HTTP://a.org')
    """
    from urllib.parse import urlsplit

    text = str(url or "").strip()
    parts = urlsplit(text)
    if parts.scheme.lower() in ("http", "https") and parts.netloc and not any(c in text for c in "\"'<> \t\n"):
        return text
    return None


def figure_to_data_uri(fig: plt.Figure) -> str:
    """A figure as an inline PNG ``data:`` URI (the page loads nothing from the network); closes the figure."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
