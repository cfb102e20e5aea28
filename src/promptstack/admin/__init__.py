"""Administration of the event backbone: the outbox backlog and parked events."""
