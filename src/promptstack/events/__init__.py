"""The event backbone: the outbox and inbox, the relay, the buses and the consumers.

Services only record events (`UnitOfWork.record`); everything that moves them lives
here. It knows no domain: each domain registers its own handlers from `bootstrap()`.
"""
