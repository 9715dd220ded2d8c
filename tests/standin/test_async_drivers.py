"""The async drivers (PyMongo's AsyncMongoClient and Motor) against the stand-in."""

from __future__ import annotations

import asyncio
import socket
import struct
import uuid

import bson
from motor.motor_asyncio import AsyncIOMotorClient
from pymongo import AsyncMongoClient, ReturnDocument

from standin.process import StandinProcess


async def test_async_pymongo_crud(standin: StandinProcess) -> None:
    client: AsyncMongoClient = AsyncMongoClient(standin.uri)
    db = client[f"async_{uuid.uuid4().hex[:8]}"]
    try:
        await db.items.create_index("sku", unique=True)
        await db.items.insert_many([{"sku": i, "qty": 0} for i in range(150)])
        await db.items.update_one({"sku": 3}, {"$inc": {"qty": 5}})
        assert (await db.items.find_one({"sku": 3}))["qty"] == 5
        docs = await db.items.find({}).batch_size(40).to_list(None)
        assert len(docs) == 150
        after = await db.items.find_one_and_update(
            {"sku": 4}, {"$set": {"qty": 9}}, return_document=ReturnDocument.AFTER
        )
        assert after["qty"] == 9
    finally:
        await client.drop_database(db.name)
        await client.close()


async def test_motor_crud(standin: StandinProcess) -> None:
    client = AsyncIOMotorClient(standin.uri)
    db = client[f"motor_{uuid.uuid4().hex[:8]}"]
    try:
        result = await db.courses.insert_one({"title": "Intro", "enrollers": 0})
        await db.courses.update_one({"_id": result.inserted_id}, {"$inc": {"enrollers": 1}})
        found = await db.courses.find({"title": "Intro"}).to_list(length=None)
        assert [d["enrollers"] for d in found] == [1]
        assert await db.courses.count_documents({}) == 1
    finally:
        await client.drop_database(db.name)
        client.close()


async def test_200_concurrent_inserts_over_200_connections(standin: StandinProcess) -> None:
    # maxConnecting lifts the driver's default of 2 connections being opened at a time, so the
    # 200 concurrent operations really open (nearly) 200 pooled connections.
    client: AsyncMongoClient = AsyncMongoClient(standin.uri, maxPoolSize=200, maxConnecting=200)
    db = client[f"concurrent_{uuid.uuid4().hex[:8]}"]
    try:
        await db.e.create_index([("course_id", 1), ("user_id", 1)], unique=True)
        before = (await client.admin.command("serverStatus"))["connections"]["totalCreated"]
        results = await asyncio.gather(
            *(db.e.insert_one({"course_id": 1, "user_id": i}) for i in range(200))
        )
        assert all(r.acknowledged for r in results)
        assert await db.e.count_documents({}) == 200
        after = (await client.admin.command("serverStatus"))["connections"]["totalCreated"]
        assert after - before >= 100, (before, after)
    finally:
        await client.drop_database(db.name)
        await client.close()


def test_hundreds_of_simultaneous_raw_connections(standin: StandinProcess) -> None:
    """300 sockets connected at once, each sending OP_MSG hello before any reply is read."""
    sockets = [socket.create_connection(("127.0.0.1", standin.port)) for _ in range(300)]
    try:
        for request_id, sock in enumerate(sockets, start=1):
            payload = bson.encode({"hello": 1, "$db": "admin"})
            body = struct.pack("<I", 0) + b"\x00" + payload
            sock.sendall(struct.pack("<iiii", 16 + len(body), request_id, 0, 2013) + body)
        connection_ids = set()
        for request_id, sock in enumerate(sockets, start=1):
            header = _recv_exactly(sock, 16)
            length, _, response_to, opcode = struct.unpack("<iiii", header)
            assert (response_to, opcode) == (request_id, 2013)
            reply = bson.decode(_recv_exactly(sock, length - 16)[5:])
            assert reply["ok"] == 1
            connection_ids.add(reply["connectionId"])
        assert len(connection_ids) == 300
    finally:
        for sock in sockets:
            sock.close()


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "connection closed"
        data += chunk
    return data
