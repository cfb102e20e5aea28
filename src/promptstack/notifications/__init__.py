"""Notifications: admins send them, users read them in the app and by email."""
