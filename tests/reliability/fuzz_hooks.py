"""Schemathesis hooks (loaded through SCHEMATHESIS_HOOKS by tests/reliability/fuzz.py).

Random 24-hex course ids almost never exist, so about half of the generated ids are
swapped for the seeded course's id, and about half of the generated user ids (in bodies
and in the lifecycle's `{user_id}` paths) for real ones: the fuzzer then reaches the
enroll, detail, assignment, withdraw and complete code past the 404/400s.
The choice is derived from the generated value, so runs stay reproducible with --seed.
"""

import os

import schemathesis

COURSE_ID = os.environ.get("FUZZ_COURSE_ID", "")
USER_IDS = [int(uid) for uid in os.environ.get("FUZZ_USER_IDS", "").split(",") if uid]


@schemathesis.hook
def map_path_parameters(context, path_parameters):
    course_id = (path_parameters or {}).get("course_id")
    if COURSE_ID and isinstance(course_id, str) and course_id[:1] in "01234567":
        path_parameters["course_id"] = COURSE_ID
    if "user_id" in (path_parameters or {}):
        # The lifecycle's admin routes name an enrolled user by id.
        path_parameters["user_id"] = _real(path_parameters["user_id"])
    return path_parameters


def _real(value):
    if USER_IDS and type(value) is int and value % 2 == 0:
        return USER_IDS[value % len(USER_IDS)]
    return value


@schemathesis.hook
def map_body(context, body):
    if isinstance(body, dict):
        if "user_id" in body:
            body["user_id"] = _real(body["user_id"])
        if isinstance(body.get("user_ids"), list):
            body["user_ids"] = [_real(value) for value in body["user_ids"]]
    return body
