"""Inventory: the saga's stock reservation step, and its release."""
