"""The sink (``camwire sink``): the workers' results in, events out. It tracks objects, keeps
each camera's status (the live copy of camera state) and its ledger of what was told, and drives
the outputs. ``outputs/`` holds what it sends to (MQTT and Home Assistant, webhook, Kafka);
``store/`` what it writes to disk (the events file, snapshots, frames, status.db and its readers).
It imports only common/."""
