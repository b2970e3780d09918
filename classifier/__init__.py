"""The classifier pool: the ventilator that shares out frames, the workers, and the sink."""
