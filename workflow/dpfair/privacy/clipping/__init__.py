"""Per-unit clipping: clip policies, adaptive (group) thresholds and the book-keeping clipper.

The clipper's per-layer rules are in :mod:`dpfair.privacy.clipping.rules`, one file per layer kind.
"""

from dpfair.faces import lazy_face

__all__, __getattr__, __dir__ = lazy_face(
    __name__,
    {
        "ClipPolicy": "policy",
        "FlatClip": "policy",
        "NormalizedClip": "policy",
        "register_clip_policy": "policy",
        "get_clip_policy": "policy",
        "available_clip_policies": "policy",
        "configurable_clip_policies": "policy",
        "GroupAdaptiveClip": "adaptive",
        "GlobalAdaptiveClip": "adaptive",
        "joint_ledger": "adaptive",
        "BookKeepingClipper": "bookkeeping",
    },
)
