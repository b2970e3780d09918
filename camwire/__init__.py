"""camwire: watch many video cameras at once. ``camwire --help`` lists the daemons."""

__version__ = "0.1.0"
