"""Membership operations: the ids that make counting into a course exactly once.

Every change to a course's members (today: one self-enroll or single assignment, or one
bulk assignment) is an *operation* with an id. The enrollments it concerns carry that id
(`op`), written in the same write that creates them; the course update that counts them in
records the id in the course's `applied` ledger, and is filtered so that it applies only
when the id is provably not applied yet. docs/scaling.md ("Membership model") has the
argument; this module holds the pure rules, `courses.repository` the queries.

An id is a positive 64-bit integer that orders operations by creation time:

    microseconds since 2025-01-01 (52 bits) | process tag (9 bits) | bulk (1 bit) | retired (1 bit)

The ledger keeps the `APPLIED_OPS` largest ids it has seen, so an id that is neither in it
nor larger than its smallest entry (once it is full) may have been applied long ago: such an
operation is presumed applied and never re-applied (no double count, ever); only
`reconcile_enrollments` can count it in if it never was.
"""

import os
import time

# Ledger size: each entry is ~13 bytes of the course document (512 ≈ 6.6 KiB).
APPLIED_OPS = 512
EPOCH_US = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z
_TAG = int.from_bytes(os.urandom(2), "big") & 0x1FF
_last_us = 0


def new_op(*, bulk: bool) -> int:
    """A fresh operation id, strictly increasing within this process."""
    global _last_us
    now = time.time_ns() // 1000 - EPOCH_US
    _last_us = max(now, _last_us + 1)
    return (_last_us << 11) | (_TAG << 2) | (int(bulk) << 1)


def new_ops(n: int, *, bulk: bool) -> list[int]:
    """`n` fresh ids in increasing order (consecutive microseconds of this process's clock,
    so later ids of this process stay larger): FIFO waitlist keys for a bulk assignment's
    users, in request order."""
    return [new_op(bulk=bulk) for _ in range(n)]


def is_bulk(op: int) -> bool:
    """Bulk operations are applied (or retired) only by bulk assignment; their enrollments
    are written by one insert that others may see half done."""
    return bool(op & 2)


def retired(op: int) -> int:
    """The ledger entry that marks `op` as retired: never to be applied, its enrollments to
    be adopted by another operation (`courses.services.membership_apply_bulk`)."""
    return op | 1


def created_at_us(op: int) -> int:
    """When the operation was created (microseconds since the Unix epoch)."""
    return (op >> 11) + EPOCH_US
