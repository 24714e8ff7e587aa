"""Emulated slow links on one machine: link profiles and a shaped TCP relay."""

from .netns import NamespaceLink, NamespaceLinkError, cleanup_stale, kernel_shaping_available
from .presets import PRESETS, LinkProfile, LinkSpecError, parse_link
from .shaper import ShapedRelay, shaped

# --link-emulation: kernel shaping (netns + tc), the user-space shaper, or kernel where it works.
EMULATION_CHOICES = ("auto", "kernel", "user")

__all__ = [
    "EMULATION_CHOICES",
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
