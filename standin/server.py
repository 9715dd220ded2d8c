"""Socket server and wire protocol: OP_MSG for everything, OP_QUERY for the legacy handshake.

Design choice: MockupDB's own ``MockupDB`` server runs every connection's request handling
under one server-wide lock that it also holds while writing replies, matches every request
against its autoresponder list, decodes commands into naive-datetime ``OrderedDict``s, listens
with a backlog of 128 and asserts on ``moreToCome`` (unacknowledged) messages.  That is fine for
scripted driver tests but costly and limiting as a database.  So this module runs its own
thread-per-connection loop (the same model as MockupDB) and parses OP_MSG itself with
tz-aware codec options; MockupDB's ``OpQuery``/``OpReply`` still handle the legacy OP_QUERY
handshake (``isMaster`` on ``admin.$cmd``) that drivers send first, and its opcode constants
are used throughout.
"""

from __future__ import annotations

import itertools
import socket
import struct
import sys
import threading
import traceback
from typing import Any, BinaryIO

import bson
from bson.codec_options import CodecOptions, DatetimeConversion
from mockupdb import OP_MSG, OP_MSG_FLAGS, OP_QUERY, OpQuery, OpReply

from .engine import Connection, Engine

# Datetimes decode timezone-aware (UTC) so stored values, filters and replies agree; dates
# outside Python's range decode as DatetimeMS instead of failing.
CODEC_OPTIONS: CodecOptions = CodecOptions(
    tz_aware=True, datetime_conversion=DatetimeConversion.DATETIME_AUTO
)
_HEADER = struct.Struct("<iiii")  # messageLength, requestID, responseTo, opCode
_CHECKSUM_PRESENT = OP_MSG_FLAGS["checksumPresent"]
_MORE_TO_COME = OP_MSG_FLAGS["moreToCome"]
_LISTEN_BACKLOG = 1024  # hundreds of pooled connections may arrive at once
_MAX_MESSAGE = 48_000_000 + 16 * 1024 * 1024


class ProtocolError(Exception):
    """A message the server cannot parse; the connection is closed."""


def parse_op_msg(body: bytes) -> tuple[int, dict[str, Any]]:
    """(flags, command) of an OP_MSG body; document sequences become command fields."""
    (flags,) = struct.unpack_from("<I", body, 0)
    end = len(body) - 4 if flags & _CHECKSUM_PRESENT else len(body)
    position = 4
    command: dict[str, Any] | None = None
    sequences: dict[str, list[dict[str, Any]]] = {}
    while position < end:
        kind = body[position]
        (size,) = struct.unpack_from("<i", body, position + 1)
        start = position + 1
        if kind == 0:
            command = bson.decode(body[start : start + size], CODEC_OPTIONS)
        elif kind == 1:
            name_end = body.index(b"\x00", start + 4)
            identifier = body[start + 4 : name_end].decode()
            sequences[identifier] = bson.decode_all(
                body[name_end + 1 : start + size], CODEC_OPTIONS
            )
        else:
            raise ProtocolError(f"unknown OP_MSG section kind {kind}")
        position = start + size
    if command is None:
        raise ProtocolError("OP_MSG without a body section")
    command.update(sequences)
    return flags, command


def op_msg_reply(response_to: int, reply: dict[str, Any], request_id: int) -> bytes:
    payload = bson.encode(reply)
    header = _HEADER.pack(16 + 5 + len(payload), request_id, response_to, OP_MSG)
    return b"".join((header, b"\x00\x00\x00\x00\x00", payload))


class StandinServer:
    def __init__(self, engine: Engine, host: str = "127.0.0.1", port: int = 27017) -> None:
        self.engine = engine
        self.host = host
        self.port = port
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._connection_ids = itertools.count(1)
        self._reply_ids = itertools.count(1)
        self._clients: set[socket.socket] = set()
        self._clients_lock = threading.Lock()

    def bind(self) -> int:
        """Bind and listen; returns the port (useful with port 0)."""
        return self._listen().getsockname()[1]

    def _listen(self) -> socket.socket:
        if self._listener is None:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.host, self.port))
            listener.listen(_LISTEN_BACKLOG)
            # A timeout lets the accept loop notice stop() (signal handlers only set a flag).
            listener.settimeout(0.2)
            self._listener = listener
            self.port = listener.getsockname()[1]
        return self._listener

    def serve_forever(self) -> None:
        listener = self._listen()
        while not self._stopping.is_set():
            try:
                client, address = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    break
                raise
            client.settimeout(None)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer = f"{address[0]}:{address[1]}"
            thread = threading.Thread(
                target=self._serve_connection, args=(client, peer), daemon=True
            )
            thread.start()
        listener.close()

    def stop(self) -> None:
        """Ask the accept loop to exit and hang up on every client."""
        self._stopping.set()
        with self._clients_lock:
            clients = list(self._clients)
        for client in clients:
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # ---------------------------------------------------------------------- connections

    def _serve_connection(self, client: socket.socket, peer: str) -> None:
        conn = Connection(id=next(self._connection_ids), peer=peer)
        with self._clients_lock:
            self._clients.add(client)
            self.engine.connections_current += 1
            self.engine.connections_total += 1
        reader = client.makefile("rb")
        try:
            while not self._stopping.is_set():
                reply = self._handle_message(reader, conn)
                if reply:
                    client.sendall(reply)
        except (ConnectionError, EOFError, OSError):
            pass  # the client hung up
        except ProtocolError as exc:
            print(f"standin: closing {peer}: {exc}", file=sys.stderr, flush=True)
        except Exception:  # a bug: log it, drop this connection, keep serving the others
            print(f"standin: closing {peer} after an internal error", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
        finally:
            with self._clients_lock:
                self._clients.discard(client)
                self.engine.connections_current -= 1
            reader.close()
            client.close()

    def _handle_message(self, reader: BinaryIO, conn: Connection) -> bytes | None:
        header = _read_exactly(reader, 16)
        length, request_id, _, opcode = _HEADER.unpack(header)
        if not 16 < length <= _MAX_MESSAGE:
            raise ProtocolError(f"invalid message length {length}")
        body = _read_exactly(reader, length - 16)
        if opcode == OP_MSG:
            flags, command = parse_op_msg(body)
            db = command.pop("$db", "admin")
            reply = self.engine.execute(db, command, conn)
            if flags & _MORE_TO_COME:
                return None  # unacknowledged write: the client expects no answer
            return op_msg_reply(request_id, reply, next(self._reply_ids))
        if opcode == OP_QUERY:
            return self._handle_legacy_query(body, request_id, conn)
        raise ProtocolError(f"unsupported opcode {opcode} (only OP_MSG and OP_QUERY commands)")

    def _handle_legacy_query(self, body: bytes, request_id: int, conn: Connection) -> bytes:
        request = OpQuery.unpack(body, None, None, request_id)
        if not request.is_command:
            reply: dict[str, Any] = {
                "ok": 0.0,
                "errmsg": "OP_QUERY is only supported for the handshake commands",
                "code": 352,
                "codeName": "UnsupportedOpQueryCommand",
            }
        else:
            command = dict(request.doc)
            if "$query" in command:  # drivers wrap commands that carry a read preference
                command = dict(command["$query"])
            reply = self.engine.execute(request.namespace, command, conn)
        return OpReply(reply).reply_bytes(request)


def _read_exactly(reader: BinaryIO, size: int) -> bytes:
    data = reader.read(size)
    if data is None or len(data) < size:
        raise EOFError
    return data
