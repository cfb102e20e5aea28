"""One adapter per provider, each behind the Protocol in `base.py`."""
