import asyncio
import re

from django.core.management.base import BaseCommand, CommandError

from common.errors import DomainError
from courses.management.errors import command_error
from courses.reconcile import (
    GRACE_SECONDS,
    courses_reconcile,
    enrollments_dedupe,
    enrollments_duplicates,
    enrollments_orphans,
)
from mongo.client import close_client


class Command(BaseCommand):
    help = (
        "Recompute each course's enrollers and enrolled_users (its most recent members) "
        "from the enrollments collection and report what was fixed. Duplicate (course, "
        "user) enrollments stop it (--dedupe removes them first); orphan enrollments are "
        "reported (--orphans removes them)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--course", help="Only this course id.")
        parser.add_argument("--dry-run", action="store_true", help="Report, change nothing.")
        parser.add_argument(
            "--dedupe",
            action="store_true",
            help="First delete all but the oldest enrollment of each duplicated (course, "
            "user) pair and create the unique index.",
        )
        parser.add_argument(
            "--orphans",
            action="store_true",
            help="Delete enrollments whose course does not exist.",
        )

        parser.add_argument(
            "--grace",
            type=float,
            default=GRACE_SECONDS,
            metavar="SECONDS",
            help="Leave out operations younger than this that no course update recorded: "
            f"their request may still be running (default {GRACE_SECONDS:g}).",
        )

    def handle(
        self,
        *args,
        course=None,
        dry_run=False,
        dedupe=False,
        orphans=False,
        grace=GRACE_SECONDS,
        **options,
    ):
        if course is not None and not re.fullmatch(r"[0-9a-fA-F]{24}", course):
            raise CommandError(f"Not a course id: {course!r}")
        verb = "would fix" if dry_run else "fixed"

        async def run():
            try:
                duplicates = await (
                    enrollments_dedupe(dry_run=dry_run) if dedupe else enrollments_duplicates()
                )
                if duplicates.pairs and not (dedupe and not dry_run):
                    # Counting duplicates into the courses would list users twice.
                    return duplicates, None, None
                lost = await enrollments_orphans(remove=orphans and not dry_run)
                fixes = await courses_reconcile(
                    course_id=course.lower() if course else None,
                    dry_run=dry_run,
                    grace_seconds=grace,
                )
                return duplicates, lost, fixes
            finally:
                await close_client()

        try:
            duplicates, lost, fixes = asyncio.run(run())
        except DomainError as exc:
            raise command_error(exc) from exc
        if duplicates.pairs:
            summary = (
                f"{len(duplicates.pairs)} (course, user) pair(s) have more than one "
                f"enrollment ({len(duplicates.surplus)} surplus; e.g. {duplicates.example()})"
            )
            if fixes is None:
                action = "would remove them" if dedupe else "run with --dedupe to remove them"
                message = f"{summary}; {action}, keeping the oldest of each."
                if dry_run and dedupe:
                    self.stdout.write(message)
                    return
                raise CommandError(f"{message} Counters left unchanged.")
            self.stdout.write(f"{summary}: removed {duplicates.removed}, kept the oldest of each.")
        if lost.courses:
            listed = ", ".join(f"{cid} ({n})" for cid, n in lost.courses.items())
            if lost.removed:
                done = f"removed {lost.removed}"
            elif orphans:
                done = "would remove them"
            else:
                done = "run with --orphans to remove them"
            self.stdout.write(
                f"{lost.enrollments} orphan enrollment(s) of {len(lost.courses)} missing "
                f"course(s): {listed}; {done}."
            )
        changed = [fix for fix in fixes if fix.changed]
        for fix in changed:
            self.stdout.write(
                f"{fix.course_id}: enrollers {fix.enrollers_before} -> {fix.enrollers_after}; "
                f"added {fix.added or '[]'}, removed {fix.removed or '[]'} ({verb})"
            )
        consistent = not changed and not lost.courses and not duplicates.pairs
        self.stdout.write(
            self.style.SUCCESS(
                f"Checked {len(fixes)} course(s); {len(changed)} {verb}"
                f"{' (all consistent)' if consistent else ''}."
            )
        )
