"""Cross-cutting infrastructure every layer may use: settings, database, errors, logging."""
