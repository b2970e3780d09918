"""Where the sink sends events besides its events file and PUB socket: MQTT (with Home
Assistant's discovery), an HTTP webhook and Kafka. Each has its own thread and a bounded queue,
so none ever holds up the sink."""
