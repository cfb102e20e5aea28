"""The core floor: settings, cache, rate limits, resilience, the unit of work."""
