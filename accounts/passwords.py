"""Password hashing off the event loop.

PBKDF2 costs about 0.25 s a hash here. Django 5.2's `acheck_password` hashes on the
event loop, which would stall every other request; `sync_to_async` would serialize all
hashing behind the one thread that also runs ORM calls. A dedicated small pool keeps
logins from blocking either (hashlib releases the GIL while it hashes).
"""

import asyncio
from concurrent.futures import ThreadPoolExecutor

from django.contrib.auth.hashers import check_password, make_password

from asgi_app.env import env_int

_executor = ThreadPoolExecutor(
    max_workers=env_int("PASSWORD_HASH_THREADS", 2), thread_name_prefix="password-hash"
)


async def password_hash(raw: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(_executor, make_password, raw)


async def password_check(raw: str, encoded: str | None) -> bool:
    if encoded is None:
        # Hash anyway so that an unknown username takes as long as a wrong password.
        await password_hash(raw)
        return False
    return await asyncio.get_running_loop().run_in_executor(_executor, check_password, raw, encoded)
