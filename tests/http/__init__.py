"""The shared HTTP kit and the HTTP contract."""
