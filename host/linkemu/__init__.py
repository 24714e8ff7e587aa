"""Emulated links on one machine: link profiles, and a TCP relay with impairments (shape, damage,
tap); kernel shaping in network namespaces."""

from .damage import Damage, DamageCounts
from .netns import NamespaceLink, NamespaceLinkError, cleanup_stale, kernel_shaping_available
from .presets import PRESETS, LinkSpec, LinkSpecError, parse_link
from .relay import Impairment, Relay
from .shaper import Shape, ShapedRelay, shaped
from .tap import Tap

# --link-emulation: kernel shaping (netns + tc), the user-space shaper, or kernel where it works.
EMULATION_CHOICES = ("auto", "kernel", "user")

__all__ = [
    "EMULATION_CHOICES",
    "PRESETS",
    "Damage",
    "DamageCounts",
    "Impairment",
    "LinkSpec",
    "LinkSpecError",
    "NamespaceLink",
    "NamespaceLinkError",
    "Relay",
    "Shape",
    "ShapedRelay",
    "Tap",
    "cleanup_stale",
    "kernel_shaping_available",
    "parse_link",
    "shaped",
]
