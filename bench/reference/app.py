"""The yardstick: enroll and the course list as a FastAPI + PyMongo + PyJWT service.

Written the way a competent engineer would in an afternoon, to the same contract
(docs/api.md) and against the same database as the API: verify the access token (HS256,
the same signing key and claims), check the course (404, archived or outside its window:
409), insert the enrollment and let the unique (course_id, user_id) index decide, then
the guarded course update. 201 the first time, 200 with the same body on a repeat. Not
tuned up or down: see bench/README.md. Run it with
`uvicorn bench.reference.app:app` and the API's SECRET_KEY, MONGODB_URI and MONGODB_DB.
"""

import os
from datetime import UTC, datetime
from typing import Annotated

import jwt
from bson import ObjectId
from bson.errors import InvalidId
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

SIGNING_KEY = os.environ.get("JWT_SIGNING_KEY") or os.environ["SECRET_KEY"]
client = AsyncMongoClient(os.environ["MONGODB_URI"], tz_aware=True)
db = client[os.environ["MONGODB_DB"]]
app = FastAPI()


class Problem(Exception):
    def __init__(self, status: int, detail: str, code: str) -> None:
        self.status, self.detail, self.code = status, detail, code


@app.exception_handler(Problem)
async def problem(request: Request, exc: Problem) -> JSONResponse:
    return JSONResponse({"detail": exc.detail, "code": exc.code}, status_code=exc.status)


def current_user(authorization: Annotated[str | None, Header()] = None) -> dict:
    scheme, _, token = (authorization or "").partition(" ")
    try:
        if scheme != "Bearer":
            raise jwt.InvalidTokenError("no bearer token")
        claims = jwt.decode(token, SIGNING_KEY, algorithms=["HS256"])
    except jwt.InvalidTokenError:
        claims = {}
    if claims.get("token_type") != "access" or type(claims.get("user_id")) is not int:
        raise HTTPException(
            401,
            "Given token not valid for any token type",
            {"WWW-Authenticate": 'Bearer realm="api"'},
        )
    return claims


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")


def course_out(c: dict) -> dict:
    enrollers, capacity = c["enrollers"], c.get("capacity")
    return {
        "id": str(c["_id"]),
        "course_title": c["course_title"],
        "course_description": c["course_description"],
        "display_price": {
            "amount": f"{c['display_price']['amount'].to_decimal():.2f}",
            "currency": c["display_price"]["currency"],
        },
        "enrollers": enrollers,
        "created_at": iso(c["created_at"]),
        "capacity": capacity,
        "seats_left": None if capacity is None else max(capacity - enrollers, 0),
        "enrollment_opens_at": iso(c.get("enrollment_opens_at")),
        "enrollment_closes_at": iso(c.get("enrollment_closes_at")),
        "status": c.get("status", "open"),
        "updated_at": iso(c["updated_at"]),
    }


def enrollment_out(e: dict) -> dict:
    return {
        "id": str(e["_id"]),
        "user_id": e["user_id"],
        "username": e["username"],
        "course_id": str(e["course_id"]),
        "status": e["status"],
        "enrolled_at": iso(e["enrolled_at"]),
        "source": e["source"],
    }


@app.post("/api/courses/{course_id}/enroll/")
async def enroll(course_id: str, user: Annotated[dict, Depends(current_user)]) -> JSONResponse:
    try:
        oid = ObjectId(course_id)
    except InvalidId:
        raise Problem(404, "Course not found.", "not_found") from None
    window = {"status": 1, "enrollment_opens_at": 1, "enrollment_closes_at": 1}
    course = await db.courses.find_one({"_id": oid}, window)
    if course is None:
        raise Problem(404, "Course not found.", "not_found")
    now = datetime.now(UTC)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # MongoDB keeps ms
    opens, closes = course.get("enrollment_opens_at"), course.get("enrollment_closes_at")
    if course.get("status") == "archived":
        refused = Problem(409, "The course is archived.", "course_archived")
    elif (opens and now < opens) or (closes and now >= closes):
        refused = Problem(409, "The course is not taking enrollments now.", "enrollment_closed")
    else:
        refused = None
    uid, username = user["user_id"], user["username"]
    doc = {"_id": ObjectId(), "user_id": uid, "username": username, "course_id": oid}
    doc |= {"status": "active", "enrolled_at": now, "source": "self", "assigned_by": None}
    try:
        if refused:  # a repeat into a closed course still answers 200
            raise DuplicateKeyError("refused")
        await db.enrollments.insert_one(doc)
    except DuplicateKeyError:
        existing = await db.enrollments.find_one({"course_id": oid, "user_id": uid})
        if existing is None:
            raise refused or Problem(503, "Try again.", "unavailable") from None
        return JSONResponse(enrollment_out(existing), status_code=200)
    await db.courses.update_one(
        {"_id": oid, "enrolled_users.user_id": {"$ne": uid}},
        {
            "$inc": {"enrollers": 1},
            "$push": {"enrolled_users": {"user_id": uid, "username": username}},
            "$set": {"updated_at": now},
        },
    )
    return JSONResponse(enrollment_out(doc), status_code=201)


@app.get("/api/courses/")
async def course_list(
    request: Request, _: Annotated[dict, Depends(current_user)], limit: int = 20, offset: int = 0
) -> dict:
    limit, offset = min(limit if limit > 0 else 20, 100), max(offset, 0)
    query = {"status": {"$ne": "archived"}}
    count = await db.courses.count_documents(query)
    cursor = db.courses.find(query, {"enrolled_users": 0, "title_words": 0})
    cursor = cursor.sort([("created_at", -1), ("_id", -1)]).skip(offset).limit(limit)
    results = [course_out(c) async for c in cursor]
    url = request.url.remove_query_params("offset").include_query_params(limit=limit)
    after, before = offset + limit, max(offset - limit, 0)
    return {
        "count": count,
        "next": str(url.include_query_params(offset=after)) if after < count else None,
        "previous": None
        if offset == 0
        else str(url.include_query_params(offset=before) if before else url),
        "results": results,
    }
