"""Kafka plumbing: topics, codecs, client settings, the embedded broker, the Faust app, publishing."""
