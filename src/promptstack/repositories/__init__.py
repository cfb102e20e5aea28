"""Data access only: queries and persistence, no business rules."""
