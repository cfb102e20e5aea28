"""The account export: a job that gathers everything the service holds about a user."""
