"""The wire format: how jobs, models and datasets look to their readers (serializers.py), and a
job's whole picture for one reader (snapshots.py). The API answers with it; sockets send it."""
