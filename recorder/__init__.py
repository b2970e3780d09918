"""The recorder (``camwire recorder``): each camera into a ring of video files, indexed, bounded by age,
size and free space; the files around events kept as clips; ``camwire clip`` cuts a time range out."""
