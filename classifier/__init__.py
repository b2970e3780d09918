"""The classifier pool: the ventilator (``camwire ventilator``: frames in from the extractors,
shared out to workers by credits) and the workers (``camwire classifier``: a detector on each
frame, results out to the sink), with the detectors they run. It imports only common/."""
