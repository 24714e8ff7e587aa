"""The one error type of the data layer."""

from __future__ import annotations

from edge_runtime.errors import UsageFault


class DataError(UsageFault, ValueError):
    """A dataset spec, file or request the edge cannot use.

    The message always says what the user must change: the path, the accepted spec forms,
    or the value that is out of range.
    """
