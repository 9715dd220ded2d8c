"""Neutral building blocks that every layer may import (web, services, repositories, clients)."""
