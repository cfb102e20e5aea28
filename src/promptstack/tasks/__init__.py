"""Background jobs: their definitions and the executors that run them."""
