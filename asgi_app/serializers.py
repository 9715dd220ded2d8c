from rest_framework import serializers


class StrictSerializer(serializers.Serializer):
    """A serializer that rejects fields it does not declare, instead of ignoring them."""

    def validate(self, attrs):
        if isinstance(self.initial_data, dict):
            unexpected = sorted(set(self.initial_data) - set(self.fields))
            if unexpected:
                raise serializers.ValidationError(
                    {name: ["Unexpected field."] for name in unexpected}
                )
        return attrs
