"""HTTP: routes that translate between requests and service calls, and nothing more."""
