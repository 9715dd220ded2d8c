import asyncio

from django.conf import settings
from django.core.management.base import BaseCommand

from common.errors import DomainError
from courses import jobs
from courses.management.errors import command_error
from mongo.client import close_client


class Command(BaseCommand):
    help = (
        "Give the assignment-job documents stored before JOB_RETENTION_DAYS existed an "
        "expires_at (the job's creation + the retention), so that the TTL indexes delete "
        "them too. Idempotent, and safe while the service runs."
    )

    def handle(self, *args, **options):
        async def run() -> tuple[int, int]:
            try:
                return await jobs.jobs_backfill_expiry()
            finally:
                await close_client()

        try:
            changed, orphans = asyncio.run(run())
        except DomainError as exc:
            raise command_error(exc) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"{changed} job(s) and {orphans} orphan chunk/result/claim document(s) given "
                f"an expiry ({settings.JOB_RETENTION_DAYS} days after their creation)."
            )
        )
