"""Messages: the base class, the registry keyed by type code, and the one JSON body codec.

A message family (the link's control messages, training, deploy) defines its classes where it
lives and registers them with ``@register``; ``decode_message`` looks the header's type up here
and returns a typed value or raises ``ProtocolError``. A process can decode only the families it
has imported, which is the point: a deploy agent has no business receiving a BATCH.

JSON bodies (``JsonMessage``) are encoded from the dataclass fields and decoded against their
type hints, so a malformed body is a ``ProtocolError`` that names the field, never a KeyError.
"""

from __future__ import annotations

import json
import struct
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from edge_runtime.link.errors import ProtocolError
from edge_runtime.link.header import Header, MsgType


@dataclass
class Message:
    """Base of every message. ``seq`` is set on received sequenced messages."""

    TYPE: ClassVar[MsgType]
    SEQUENCED: ClassVar[bool] = True
    # Carries an activation tensor: decode takes ``max_inflated`` (the bound on a coded tensor).
    TENSOR: ClassVar[bool] = False
    seq: int = field(default=0, kw_only=True, compare=False, metadata={"wire": False})

    @property
    def inflated_bytes(self) -> int:
        """Bytes the receiver's decoded tensor takes before coding (0: no tensor). A sender
        checks it against the negotiated max_frame as the receiver will (decode_message)."""
        return 0

    def encode(self) -> bytes:
        """The payload bytes of this message."""
        raise NotImplementedError

    @classmethod
    def decode(cls, payload: memoryview | bytes) -> Message:
        """Build the message from its payload bytes."""
        raise NotImplementedError


_REGISTRY: dict[int, type[Message]] = {}
M = TypeVar("M", bound=type[Message])


def register(cls: M) -> M:
    """Class decorator: ``cls`` decodes frames of type ``cls.TYPE``. One class per code."""
    code = int(cls.TYPE)
    holder = _REGISTRY.get(code)
    if holder is not None and holder is not cls:
        raise ValueError(f"message type {code} is taken by {holder.__qualname__}")
    _REGISTRY[code] = cls
    return cls


def registered() -> dict[int, type[Message]]:
    """The message classes this process can decode, by type code."""
    return dict(_REGISTRY)


@dataclass
class Malformed(Message):
    """A sequenced frame that arrived whole and in order but whose body does not decode.

    The link hands it to the application in the message's place, as a value: the frame is
    sound (its CRC held), so the connection goes on, and the application decides what a bad
    message means (a host refuses it with an ERROR; an edge gives up). It is never sent.
    """

    type_code: int
    error: str

    def encode(self) -> bytes:
        """Never: a Malformed stands for what was received."""
        raise TypeError("a Malformed message is what was received; it cannot be sent")


def decode_message(
    header: Header, payload: memoryview | bytes, max_inflated: int | None = None
) -> Message:
    """Decode the payload of a frame whose header has been checked; ProtocolError if malformed.

    ``max_inflated``: the most bytes a coded tensor may inflate to (the negotiated max_frame, so
    that a coded frame never costs more memory than an uncoded one could); None: unbounded.
    """
    cls = _REGISTRY.get(header.type)
    if cls is None:
        try:
            name = MsgType(header.type).name  # assigned, but its family is not loaded here
        except ValueError:
            name = "unassigned"
        raise ProtocolError(f"unknown message type {header.type} ({name}) on this end")
    try:
        msg = cls.decode(payload, max_inflated) if cls.TENSOR else cls.decode(payload)
    except ProtocolError:
        raise
    except (struct.error, ValueError, KeyError, TypeError, IndexError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed {cls.TYPE.name} payload: {exc}") from exc
    msg.seq = header.seq
    return msg


def encode_message(msg: Message, seq: int = 0, ack: int = 0, flags: int = 0) -> bytes:
    """Header and payload of ``msg``: the body a frame carries."""
    payload = msg.encode()
    header = Header(type=msg.TYPE, seq=seq, ack=ack, flags=flags, length=len(payload))
    return header.pack() + payload


# -- JSON bodies --------------------------------------------------------------------------------


def dump_json(obj: Any) -> bytes:
    """The wire form of a JSON body: compact, keys sorted (the same object, the same bytes)."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def load_json(payload: memoryview | bytes, hint: Any, what: str) -> Any:
    """Parse a JSON body and check it against the type ``hint``; ProtocolError if it differs."""
    try:
        obj = json.loads(bytes(payload).decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"{what}: body is not JSON: {exc}") from exc
    return _conform(obj, hint, what)


def _conform(value: Any, hint: Any, where: str) -> Any:
    """``value`` as ``hint`` says (ints become floats, lists tuples where asked), or raise."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _conform(value, option, where)
            except ProtocolError:
                continue
    elif hint is type(None):
        if value is None:
            return None
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif hint is dict or origin is dict:
        if isinstance(value, dict):
            vhint = args[1] if args else Any
            return {k: _conform(v, vhint, f"{where}[{k!r}]") for k, v in value.items()}
    elif hint is list or origin in (list, tuple):
        if isinstance(value, list):
            ehint = args[0] if args else Any
            items = [_conform(v, ehint, f"{where}[{i}]") for i, v in enumerate(value)]
            return tuple(items) if origin is tuple else items
    else:
        raise TypeError(f"{where}: no JSON form for {hint!r}")
    raise ProtocolError(
        f"{where}: expected {_name(hint)}, got {type(value).__name__} {value!r:.40}"
    )


def _name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


@dataclass
class JsonMessage(Message):
    """A message whose payload is one JSON object of its dataclass fields.

    Decoding checks every field against its type hint; a missing field with a default takes the
    default, keys this end does not know are ignored (a newer peer may send more). Fields read
    like the JSON object they travel as: ``msg["ok"]`` is ``msg.ok``.
    """

    _hints: ClassVar[dict[type, dict[str, Any]]] = {}

    @classmethod
    def _wire_fields(cls) -> dict[str, Any]:
        """{field name: type hint} of what goes on the wire."""
        hints = JsonMessage._hints.get(cls)
        if hints is None:
            resolved = typing.get_type_hints(cls)
            hints = {f.name: resolved[f.name] for f in fields(cls) if f.metadata.get("wire", True)}
            JsonMessage._hints[cls] = hints
        return hints

    def encode(self) -> bytes:
        """Payload: the wire fields as one JSON object."""
        body = {name: getattr(self, name) for name in self._wire_fields()}
        # A field added in a later version is left out at its default: the bodies peers sent
        # before it stay the same bytes.
        for f in fields(self):
            if not f.metadata.get("omit_default"):
                continue
            default = f.default_factory() if f.default is MISSING else f.default  # type: ignore[misc]
            if body.get(f.name) == default:
                del body[f.name]
        return dump_json(body)

    @classmethod
    def decode(cls, payload: memoryview | bytes) -> JsonMessage:
        """Decode and type-check every field."""
        what = cls.TYPE.name
        obj = load_json(payload, dict[str, Any], what)
        defaults = {f.name for f in fields(cls) if f.default is not MISSING}
        defaults |= {f.name for f in fields(cls) if f.default_factory is not MISSING}
        values = {}
        for name, hint in cls._wire_fields().items():
            if name in obj:
                values[name] = _conform(obj[name], hint, f"{what}.{name}")
            elif name not in defaults:
                raise ProtocolError(f"{what}: field {name!r} is missing")
        return cls(**values)

    def __getitem__(self, name: str) -> Any:
        if name not in self._wire_fields():
            raise KeyError(name)
        return getattr(self, name)
