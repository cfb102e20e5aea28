"""Background jobs: the job table and its lease protocol, the kinds, the runner, and the
executors (in process, or Celery) that run them."""
