"""The HTML report: one self-contained page from the summary tables, summary first."""

from dpfair.faces import lazy_face

__all__, __getattr__, __dir__ = lazy_face(
    __name__,
    {"render_report": "page", "number": "fmt", "epsilon_label": "fmt", "safe_url": "fmt"},
)
