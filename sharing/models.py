"""Shares and invitations of jobs (seed 000's get_sharing / modify_sharing / disable_sharing).

A share points at a job, so this app imports ``jobs`` and never the other way round.
"""
