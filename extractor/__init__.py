"""The extractor: decodes camera sources and sends stamped frames into the pipeline."""
