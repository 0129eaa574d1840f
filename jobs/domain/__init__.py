"""The domain: what a job is and the rules it keeps, with no queue, socket or page in sight.

Statuses and their transitions (status.py, state.py), seed 004's formulas, hyperparameters,
public ids, the numbered events a job records (events.py), metric series, who may read what
(selectors.py), quotas, and the checks of uploaded files. Beside it, jobs/models/ holds the
tables. Everything else in jobs/ builds on this; this imports nothing above it.
"""
