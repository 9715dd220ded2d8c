from decimal import Decimal

from django import template

register = template.Library()

STATUS_LABELS = {
    "enrolled": "Enrolled",
    "already_enrolled": "Already enrolled",
    "not_found": "Not found",
    "inactive": "Inactive",
    "active": "Active",
    "open": "Open",
    "archived": "Archived",
    "self": "Self-enrolled",
    "admin": "Assigned",
}


@register.filter
def status_label(value: str) -> str:
    return STATUS_LABELS.get(value, str(value).replace("_", " ").capitalize())


@register.filter
def price(course) -> str:
    if course.amount == Decimal(0):
        return "Free"
    return f"{course.amount:,.2f} {course.currency}"


@register.filter
def initials(name: str) -> str:
    return (name or "?")[:2].upper()


@register.filter
def thousands(value) -> str:
    """1234567 → 1,234,567 (counts of a job's users)."""
    return f"{value:,}" if isinstance(value, int) else str(value)
