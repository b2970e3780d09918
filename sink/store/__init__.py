"""What the sink writes to disk: the events file (JSON lines, rotated), snapshots, a tracked
object's frames, status.db (with the readers ``camwire status`` and the console use), and the
bookkeeping of failed writes (a full disk never stops events reaching the outputs)."""
