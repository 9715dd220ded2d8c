import asyncio
import re

from django.core.management.base import BaseCommand, CommandError

from common.errors import DomainError
from courses.reconcile import GRACE_SECONDS, courses_reconcile
from mongo.client import close_client


class Command(BaseCommand):
    help = (
        "Recompute each course's enrollers and enrolled_users (its most recent members) "
        "from the enrollments collection and report what was fixed."
    )

    def add_arguments(self, parser):
        parser.add_argument("--course", help="Only this course id.")
        parser.add_argument("--dry-run", action="store_true", help="Report, change nothing.")
        parser.add_argument(
            "--grace",
            type=float,
            default=GRACE_SECONDS,
            metavar="SECONDS",
            help="Leave out operations younger than this that no course update recorded: "
            f"their request may still be running (default {GRACE_SECONDS:g}).",
        )

    def handle(self, *args, course=None, dry_run=False, grace=GRACE_SECONDS, **options):
        if course is not None and not re.fullmatch(r"[0-9a-fA-F]{24}", course):
            raise CommandError(f"Not a course id: {course!r}")

        async def run():
            try:
                return await courses_reconcile(
                    course_id=course.lower() if course else None,
                    dry_run=dry_run,
                    grace_seconds=grace,
                )
            finally:
                await close_client()

        try:
            fixes = asyncio.run(run())
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        changed = [fix for fix in fixes if fix.changed]
        verb = "would fix" if dry_run else "fixed"
        for fix in changed:
            self.stdout.write(
                f"{fix.course_id}: enrollers {fix.enrollers_before} -> {fix.enrollers_after}; "
                f"added {fix.added or '[]'}, removed {fix.removed or '[]'} ({verb})"
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Checked {len(fixes)} course(s); {len(changed)} {verb}"
                f"{'' if changed else ' (all consistent)'}."
            )
        )
