"""The event backbone."""
