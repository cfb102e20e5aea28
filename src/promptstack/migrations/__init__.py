"""Alembic migrations, shipped inside the package so an installed `promptstack` can migrate."""
