"""Emulated slow links on one machine: link profiles and a shaped TCP relay."""

from .netns import NamespaceLink, NamespaceLinkError, cleanup_stale, kernel_shaping_available
from .presets import PRESETS, LinkProfile, LinkSpecError, parse_link
from .shaper import ShapedRelay, shaped

__all__ = [
    "PRESETS",
    "LinkProfile",
    "LinkSpecError",
    "NamespaceLink",
    "NamespaceLinkError",
    "ShapedRelay",
    "cleanup_stale",
    "kernel_shaping_available",
    "parse_link",
    "shaped",
]
