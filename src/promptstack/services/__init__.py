"""Business logic. No HTTP here: services take values, return entities, raise AppError."""
