"""One delivery path for every message that leaves a process for a peer (collector -> center now,
center <-> center cascade next): a durable SQLite outbox, a sender over HTTP or one shared MQTT
session, outcomes classified once, back-off written once.  Imports only ``messages`` and libraries."""

from carbonflow.delivery.http import HttpSender
from carbonflow.delivery.loop import DeliveryLoop
from carbonflow.delivery.mqtt import AwaitedAcks, MqttSession
from carbonflow.delivery.outbox import DeliveryQueue, SqliteOutbox
from carbonflow.delivery.outcome import DeliveryError, Sender, SendResult, classify_status, error_text
from carbonflow.delivery.stream import StreamSender
from carbonflow.delivery.tasks import cancel_and_wait

__all__ = [
    "AwaitedAcks",
    "DeliveryError",
    "DeliveryLoop",
    "DeliveryQueue",
    "HttpSender",
    "MqttSession",
    "SendResult",
    "Sender",
    "SqliteOutbox",
    "StreamSender",
    "cancel_and_wait",
    "classify_status",
    "error_text",
]
