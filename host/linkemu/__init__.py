"""Emulated slow links on one machine: link profiles and a shaped TCP relay."""

from .presets import PRESETS, LinkProfile, LinkSpecError, parse_link
from .shaper import ShapedRelay, shaped

__all__ = ["PRESETS", "LinkProfile", "LinkSpecError", "ShapedRelay", "parse_link", "shaped"]
