"""Writes, a module per object, as Zulip's ``actions/``: ``assets`` (uploads), ``jobs`` (submit,
rename, cancel, resubmit), ``external_runs``, ``deletion``; ``common`` holds the checks they
share. Each service validates everything first and changes nothing when it refuses; callers pass
objects they fetched through ``jobs.domain.selectors``, and each service checks again that the
acting user may use them."""
