"""The live layer: committed events delivered to the sockets that watch them (delivery.py), the
websocket consumers of a job and of the job list (consumers.py, routing.py), and sockets that
close when their access ends (access.py, signals.py)."""
