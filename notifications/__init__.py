"""Telling people when a job ends: an email and a webhook per finished, failed or cancelled job,
to its owner and, if they want, to those it is shared with. Builds on ``jobs`` and ``sharing``;
neither imports it (it hears of a job's end through a signal on the status log)."""
