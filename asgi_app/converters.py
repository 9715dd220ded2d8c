class ObjectIdConverter:
    """A 24-hex-digit ObjectId; anything else does not match the route (JSON 404)."""

    regex = "[0-9a-fA-F]{24}"

    def to_python(self, value: str) -> str:
        return value.lower()

    def to_url(self, value: str) -> str:
        return value
