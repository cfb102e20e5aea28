"""The event backbone: the outbox relay, the buses, and the consumers that react.

Services only record events (`UnitOfWork.record`); everything that moves them lives
here, above the services whose methods the handlers call.
"""
