"""Wire-protocol details: the legacy OP_QUERY handshake and unacknowledged (w=0) writes."""

from __future__ import annotations

import socket
import struct
import time

import bson
from pymongo import MongoClient, WriteConcern
from pymongo.database import Database

from standin.process import StandinProcess

OP_REPLY, OP_QUERY = 1, 2004


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "connection closed"
        data += chunk
    return data


def test_legacy_op_query_handshake(standin: StandinProcess) -> None:
    query = bson.encode({"isMaster": 1, "helloOk": True})
    body = struct.pack("<i", 0) + b"admin.$cmd\x00" + struct.pack("<ii", 0, -1) + query
    with socket.create_connection(("127.0.0.1", standin.port)) as sock:
        sock.sendall(struct.pack("<iiii", 16 + len(body), 42, 0, OP_QUERY) + body)
        length, _, response_to, opcode = struct.unpack("<iiii", _recv_exactly(sock, 16))
        payload = _recv_exactly(sock, length - 16)
    assert (response_to, opcode) == (42, OP_REPLY)
    _flags, _cursor_id, _start, returned = struct.unpack("<iqii", payload[:20])
    assert returned == 1
    reply = bson.decode(payload[20:])
    assert reply["ismaster"] is True
    assert reply["helloOk"] is True
    assert reply["maxWireVersion"] >= 17


def test_unacknowledged_writes_get_no_reply_and_still_apply(
    client: MongoClient, db: Database
) -> None:
    fire_and_forget = db.get_collection("w0", write_concern=WriteConcern(w=0))
    for i in range(20):
        fire_and_forget.insert_one({"i": i})
    deadline = time.monotonic() + 5
    while db.w0.count_documents({}) < 20 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert db.w0.count_documents({}) == 20


def test_command_names_are_accepted_in_legacy_spelling(db: Database) -> None:
    db.legacy.insert_one({"k": 1})
    reply = db.command({"findandmodify": "legacy", "query": {"k": 1}, "update": {"$set": {"k": 2}}})
    assert reply["value"]["k"] == 1
    assert db.command("ismaster")["ismaster"] is True
    assert db.command("buildinfo")["version"].startswith("7.")
