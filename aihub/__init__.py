"""Seed 000's own client, ``qai-hub``, unmodified, against this hub: its protobuf-over-HTTP API
at ``<hub>/aihub/api/v1/…`` as a second face of the hub's services (README, "Using qai-hub with
this hub"; docs/architecture.md, "The qai-hub face")."""
