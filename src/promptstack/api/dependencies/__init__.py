"""`Depends` providers, as `Annotated` aliases that make route signatures read as sentences."""
