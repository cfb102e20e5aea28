"""The audit log: who did what to whom, recorded in the transaction that did it."""
