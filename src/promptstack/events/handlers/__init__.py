"""The consumers the service runs, one module per area that reacts to events."""
