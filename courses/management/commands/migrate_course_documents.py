import asyncio

from django.conf import settings
from django.core.management.base import BaseCommand

from courses import repository
from mongo.client import close_client


class Command(BaseCommand):
    help = (
        "Bring course documents to membership model v2: cut enrolled_users to the "
        "COURSE_EMBEDDED_MEMBERS most recent members and start the ledger of applied "
        "membership operations. Idempotent, and safe while the service runs: each course "
        "changes in one atomic update."
    )

    def handle(self, *args, **options):
        async def run() -> tuple[int, int]:
            try:
                ids = await repository.course_all_ids()
                changed = 0
                for course_id in ids:
                    changed += await repository.course_trim_members(course_id)
                return len(ids), changed
            finally:
                await close_client()

        total, changed = asyncio.run(run())
        self.stdout.write(
            self.style.SUCCESS(
                f"Checked {total} course(s); {changed} migrated "
                f"(at most {settings.COURSE_EMBEDDED_MEMBERS} embedded members each)."
            )
        )
