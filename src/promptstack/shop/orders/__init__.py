"""Orders: an event-sourced aggregate, placed idempotently, settled by the saga."""
