"""Payments: the saga's charging step, its refunds, and the gateways it talks to."""
