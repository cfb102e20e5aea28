"""Feature flags, evaluated per caller."""
