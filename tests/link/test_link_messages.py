"""The message registry and the one JSON body codec: typed values out, ProtocolError on bad bodies."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from linktest_support import BUNDLE, KEY, Collector, fast_config

from edge_runtime.deploy_messages import Commit, CommitVerdict, FileVerdict, Inventory
from edge_runtime.infer.messages import InferAnswer  # noqa: F401 - registers its family
from edge_runtime.link import EdgeLink, HostListener
from edge_runtime.link.control import Error, Hello, Welcome
from edge_runtime.link.errors import ProtocolError
from edge_runtime.link.header import Header, MsgType
from edge_runtime.link.messages import (
    JsonMessage,
    Malformed,
    Message,
    decode_message,
    encode_message,
    register,
    registered,
)
from edge_runtime.model_messages import ModelWeights  # noqa: F401 - registers its family
from edge_runtime.train.messages import Batch, EpochEnd, Metrics, RawBatch, UploadDone

pytestmark = pytest.mark.timeout(30)


def _decode(cls: type[Message], payload: bytes) -> Message:
    return decode_message(Header(type=cls.TYPE, seq=3, length=len(payload)), payload)


def _round(msg: Message) -> Message:
    body = encode_message(msg, seq=3)
    return _decode(type(msg), body[16:])


def test_every_assigned_type_code_has_one_registered_class() -> None:
    classes = registered()
    assert sorted(classes) == sorted(int(t) for t in MsgType)
    assert all(code == cls.TYPE for code, cls in classes.items())


def test_a_taken_type_code_cannot_be_registered_again() -> None:
    @dataclass
    class Impostor(JsonMessage):
        TYPE: ClassVar[MsgType] = MsgType.METRICS
        note: str

    with pytest.raises(ValueError, match="taken by Metrics"):
        register(Impostor)
    assert registered()[MsgType.METRICS] is Metrics


def test_an_unassigned_type_code_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match=r"unknown message type 200 \(unassigned\)"):
        decode_message(Header(type=200, length=0), b"")


def test_json_bodies_are_the_same_bytes_as_before_the_registry() -> None:
    # What protocol version 1 peers already send: sorted keys, no spaces.
    assert Hello(1, "e", "r", "ff", 99).encode() == (
        b'{"bundle_sha256":"ff","edge_id":"e","max_frame":99,"run_id":"r","version":1}'
    )
    assert Welcome(4, {"epoch": 1}, 6, 1000).encode() == (
        b'{"cursor":4,"max_frame":1000,"received":6,"resume":{"epoch":1}}'
    )
    assert Error("auth", "bad key").encode() == b'{"code":"auth","message":"bad key"}'
    assert EpochEnd(2, {"b": 1, "a": 0}).encode() == b'\x00\x00\x00\x02{"a":0,"b":1}'


@pytest.mark.parametrize(
    ("cls", "body", "names"),
    [
        (Hello, {"version": "1", "edge_id": "e", "run_id": "r", "bundle_sha256": "f", "max_frame": 9}, "HELLO.version"),
        (Hello, {"version": 1, "edge_id": "e", "run_id": "r", "bundle_sha256": "f"}, "'max_frame' is missing"),
        (Welcome, {"cursor": 1, "resume": []}, "WELCOME.resume"),
        (Error, {"code": 5, "message": "m"}, "ERROR.code"),
        (FileVerdict, {"path": "edge/a", "ok": "yes"}, "DEPLOY_FILE.ok"),
        (Inventory, {"current": None, "files": {"edge/a": 3}}, "DEPLOY_INVENTORY.files['edge/a']"),
        (UploadDone, {"epochs": 1, "batch_size": 2, "seed": 0, "augment": 1, "num_classes": 10}, "UPLOAD_DONE.augment"),
        (Commit, ["not", "an", "object"], "DEPLOY_COMMIT"),
    ],
)  # fmt: skip
def test_a_malformed_json_body_is_a_protocol_error_naming_the_field(
    cls: type[Message], body: object, names: str
) -> None:
    with pytest.raises(ProtocolError, match=names.replace("[", r"\[").replace("]", r"\]")):
        _decode(cls, json.dumps(body).encode())


@pytest.mark.parametrize("payload", [b"{not json", b"\xff\xfe", b"[1, 2]", b"7"])
def test_free_form_json_must_still_be_an_object(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        _decode(Metrics, payload)
    with pytest.raises(ProtocolError):
        _decode(EpochEnd, b"\x00\x00\x00\x01" + payload)


def test_defaults_fill_missing_fields_and_unknown_keys_are_ignored() -> None:
    msg = _decode(Welcome, b'{"cursor": 5, "from_a_newer_peer": true}')
    assert msg == Welcome(5, {}, 0, 0) and msg.seq == 3
    verdict = _decode(CommitVerdict, b'{"release": "abc", "ok": true}')
    assert verdict == CommitVerdict("abc", ok=True) and verdict.switched is False


def test_deploy_and_upload_messages_round_trip_typed() -> None:
    msgs = [
        Inventory("abc123", ["abc123"], {"edge/manifest.json": "ab" * 32}),
        Inventory(None),
        FileVerdict("edge/a", ok=False, error="sha256 differs"),
        Commit("abc123", "ab" * 32, {"edge/a": "cd" * 32}),
        CommitVerdict("abc123", ok=True, switched=True),
        UploadDone(epochs=2, batch_size=32, seed=0, augment=False, num_classes=10),
    ]
    for msg in msgs:
        back = _round(msg)
        assert type(back) is type(msg) and back == msg
    # A JSON body reads like the object it travels as.
    verdict = FileVerdict("edge/a", ok=False, error="x")
    assert verdict["ok"] is False and verdict["error"] == "x"
    with pytest.raises(KeyError):
        verdict["seq"]


def test_raw_batch_names_its_data_set() -> None:
    raw = RawBatch(1, 2, np.array([1, 2]), np.zeros((2, 3), np.uint8))
    back = _round(raw)
    assert isinstance(back, RawBatch) and (back.raw_set, back.index) == (1, 2)
    # The layout did not change: u32 set | u32 index first.
    assert raw.encode()[:8] == b"\x00\x00\x00\x01\x00\x00\x00\x02"


def test_a_process_decodes_only_the_families_it_has_imported() -> None:
    # A deploy agent imports the link and the deploy family, never training: a BATCH is refused.
    script = (
        "import edge_runtime.deploy_messages\n"
        "from edge_runtime.link.errors import ProtocolError\n"
        "from edge_runtime.link.header import Header, MsgType\n"
        "from edge_runtime.link.messages import decode_message, registered\n"
        "assert MsgType.DEPLOY_COMMIT in registered() and MsgType.BATCH not in registered()\n"
        "try:\n"
        "    decode_message(Header(type=MsgType.BATCH, length=0), b'')\n"
        "except ProtocolError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.strip() == "unknown message type 16 (BATCH) on this end"


@dataclass(eq=False)
class _GarbledBatch(Batch):
    """A BATCH whose body no decoder can read (a buggy or hostile sender)."""

    def encode(self) -> bytes:
        return b"\x00\x00\x00\x01\x00\x00\x00\x02\xff"


def test_a_body_that_does_not_decode_arrives_as_malformed_and_the_link_goes_on(
    listener: HostListener, tmp_path: Path
) -> None:
    col = Collector()
    host, port = listener.serve_tcp("127.0.0.1", 0, col)
    link = EdgeLink.connect(
        f"socket://{host}:{port}", key=KEY, bundle_sha256=BUNDLE, edge_id="e", run_id="r",
        spool_dir=tmp_path, config=fast_config(),
    )  # fmt: skip
    x = np.zeros((2, 4), np.float32)
    link.send(Batch(0, 0, np.arange(2), x))
    link.send(_GarbledBatch(0, 1, np.arange(2), x))
    link.send(Batch(0, 2, np.arange(2), x))
    link.flush(10)
    got = col.data()
    assert [type(m).__name__ for m in got] == ["Batch", "Malformed", "Batch"]
    bad = got[1]
    assert isinstance(bad, Malformed) and bad.type_code == MsgType.BATCH and bad.seq == 2
    assert bad.error.startswith("malformed BATCH payload")
    assert link.stats["reconnects"] == 0  # the frame was sound: the connection stayed up
    with pytest.raises(TypeError):
        bad.encode()
    link.close()
