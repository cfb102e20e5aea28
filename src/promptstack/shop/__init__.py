"""The shop: a catalog, and orders that run as an event-sourced, choreographed saga.

Its parts (`catalog`, `orders`, `payments`, `inventory`) talk through the events each
publishes; `orders` reads the catalog's prices when an order is placed, and `inventory`
keeps the catalog's stock.
"""
