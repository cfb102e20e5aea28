"""Accounts: registration, profiles, administration of users, sessions (login, tokens,
password reset, email verification), and the emails they send."""
