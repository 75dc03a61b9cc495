"""Ingestion of collector batches (contract C4) over HTTP (``http.router``) and MQTT (``MqttIngest``)."""

from carbonflow.center.ingest.mqtt import MqttIngest
from carbonflow.center.ingest.receive import MalformedBatchError, decode_batch, receive_batch

__all__ = ["MalformedBatchError", "MqttIngest", "decode_batch", "receive_batch"]
