"""The engine: how a job runs. Putting it on the queue (dispatch.py), the Celery tasks
(tasks.py), claiming the fairest pending job and running its runner (execution.py), the progress
reporter every runner reports through (reporter.py), the reaper of lost and overdue jobs
(reaper.py), and one runner per job kind (runners/)."""
