"""What two camwire daemons share: the wire format, logging, sockets, counters, lifecycle."""
