"""The recorder: a ring buffer of fixed-duration video files per camera (see issue 3; not built yet)."""
