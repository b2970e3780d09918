"""What more than one camwire daemon uses: the wire format, the config file, the daemon skeleton and its
exit codes, logging, sockets and CURVE, counters and metrics, lifecycle, units and paths. It imports
nothing outside common/."""
