"""Event media to object storage: an event's files, then its manifest, on any S3-compatible store.

``[upload]`` in camwire.toml (parsed and judged at load by :func:`upload_from_config`)::

    [upload]
    endpoint = "http://127.0.0.1:9000"   # AWS, MinIO, Ceph, GCS interop: path-style requests
    bucket = "camwire"
    prefix = "site1"                     # keys start PREFIX/ (default: none)
    access_key = "${S3_ACCESS_KEY}"      # always a ${VAR}: from the environment or a .env
    secret_key = "${S3_SECRET_KEY}"
    region = "us-east-1"                 # optional
    what = ["snapshots", "clips", "frames"]   # any of them (default: snapshots)
    retry_for = "24h"                    # a part not up by then is failed (kept in the queue as such)
    retry_max = "5m"                     # the longest wait between two tries of one part
    workers = 8                          # uploads at once

What goes, and who sends it (one :class:`Uploader`, its ``uploads.db`` in that daemon's folder):

- ``snapshots`` (the sink, ``DATA_DIR/uploads.db``): each event's snapshot files as the sink wrote
  them (:func:`snapshot_parts`), under ``EVENT_ID/00-snapshot.jpg, 01-clean.jpg, 02-thumb.jpg``;
- ``frames`` (the sink): every frame JPEG of a tracked object (sink.store.frames), at its ``end``,
  under ``END_EVENT_ID.frames/000-frame-SEQ.jpg ...`` in seq order, each file deleted once up;
- ``clips`` (the recorder, ``DIR/uploads.db``): a kept clip once complete and final, one MP4
  remuxed from its segments and its event.json (recorder.uploads), under ``EVENT_ID.clip/``.

The caller hands an event and its parts (:class:`Part`: local file, name, Content-Type) to
:meth:`Uploader.enqueue`: one SQLite transaction (a row per object, a row per upload), nothing
else on the caller's thread. A dispatcher thread sends the due parts to a bounded pool (one boto3
client, ``max_pool_connections = workers``) under keys that carry their order (the index is
zero-padded as wide as the manifest's, so keys sort in order)::

    PREFIX/CAMERA/UTC-DATE/EVENT_ID[.TAG]/00-snapshot.jpg, 01-clean.jpg, ..., then NN-manifest.json

The manifest (the event's JSON, each part's key and URL) goes only once every part is up; then an
``uploaded`` common.wire.Event (``of``: the event's id, ``urls``: the parts' then the manifest's)
waits in a thread-safe queue the daemon drains on its own loop (:meth:`Uploader.take`): the sink
emits it like any event (events file, PUB, MQTT, webhook), the recorder pushes it to the sink,
which emits it the same way; then it is marked as told (:meth:`Uploader.announced`).

A failed PUT (the store down, 5xx, a missing bucket, refused keys) is tried again after an
exponential, capped wait (:func:`backoff`) until ``retry_for`` has passed since the event was
queued; then it is failed. The first success after failures makes every waiting part due at once
(the store is back). A restart resumes what the queue holds, and tells what was uploaded but not
yet told. A part queued with ``remove`` (a frame, a clip's MP4) is deleted once up, or once its
upload failed for good. Counted under ``uploads/<outcome>``: queued, uploaded, retried, failed,
manifests, not_queued (the queue itself could not be written: a full disk). Keys are never logged.

Its modules, one job each: :mod:`common.upload.settings` (the ``[upload]`` table judged),
:mod:`common.upload.parts` (parts, keys and URLs: pure), :mod:`common.upload.queue_db` (``uploads.db``),
:mod:`common.upload.s3` (the boto3 client, a failed PUT's reason) and :mod:`common.upload.uploader`
(the dispatcher and its pool). Both daemons import what they use from here.
"""

from camwire.common.upload.parts import Part, index_width, object_key, object_url, snapshot_parts, upload_id
from camwire.common.upload.queue_db import UploadQueue
from camwire.common.upload.s3 import make_client
from camwire.common.upload.settings import SINK_WHAT, WHAT, UploadConfig, upload_from_config
from camwire.common.upload.uploader import Uploader, backoff

__all__ = ["SINK_WHAT", "WHAT", "Part", "UploadConfig", "UploadQueue", "Uploader", "backoff", "index_width",
           "make_client", "object_key", "object_url", "snapshot_parts", "upload_from_config", "upload_id"]
