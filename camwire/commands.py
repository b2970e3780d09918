"""camwire's commands: the module that runs each, its one-line help, and what its ``--help``
says to the person running it (what it does, what to point it at, where its files go); the
modules' docstrings are notes for the people who work on them."""

from __future__ import annotations

# sub-command -> (module, one-line help); modules are imported only when their command runs
COMMANDS = {
    "extractor": ("camwire.extractor.daemon", "read cameras (RTSP, HTTP, HLS, files) and send their frames on"),
    "ventilator": ("camwire.classifier.ventilator", "share the cameras' frames out to classifier workers"),
    "classifier": ("camwire.classifier.worker", "a worker: run a detector on the cameras' frames"),
    "sink": ("camwire.sink.daemon", "turn detections into events, snapshots and camera status"),
    "recorder": ("camwire.recorder.daemon", "record cameras into a ring of files; keep the files around events"),
    "clip": ("camwire.recorder.clip", "write one file for a camera and a time range from the recorder's ring"),
    "run": ("camwire.supervisor", "run every daemon on this host, supervised (--config FILE or --camera)"),
    "status": ("camwire.status", "print the cameras and workers as the sink last saw them"),
    "reload": ("camwire.reload", "make every daemon of the deployment read camwire.toml again, and show each answer"),
    "check-config": ("camwire.checkconfig", "validate a camwire.toml as the daemons would, secrets masked"),
    "sample-clip": ("camwire.sample", "write the built-in sample clip (H.264) for demos and tests"),
    "web": ("camwire.web.daemon", "the web console: live views, events, recordings and status in a browser"),
    "keygen": ("camwire.keygen", "write a CURVE key pair for a daemon, to encrypt and authenticate its links"),
}
# what ``camwire COMMAND --help`` says: for the person running it (what it does, what to point it
# at, where its files go); the modules' docstrings are notes for the people who work on them
DESCRIPTIONS = {
    "keygen": """\
Write a CURVE key pair: NAME.key (the public key: copy it to the hosts that talk to this one)
and NAME.key_secret (this daemon's secret: mode 0600, never copied). A daemon given
--curve-key NAME.key_secret (or [security] key) encrypts every tcp:// link; a daemon that binds
lets in only the clients whose NAME.key is in its --curve-clients folder, and a daemon that
connects checks the server against --curve-servers (HOST.key for tcp://HOST:PORT, else
ventilator.key, sink.key, extractor.key).
An existing key is never overwritten.""",
    "extractor": """\
Read cameras and send their frames on: to the ventilator for detection (--push) and, with
--publish, to the recorder.

Which cameras: --config camwire.toml (its [cameras.NAME] tables; --cameras to serve only some of
them), or one camera as --camera NAME --source URL (a file, rtsp://, http(s)://, an HLS .m3u8;
repeat --source for fallbacks). A camera that drops is reconnected; one whose source can never
work (no such file, 404, not a video) is reported failed, with the reason, in camwire status and
tried again every --failed-retry. It writes nothing to disk but --stats.

Exit status: 0 stopped, or every file read to its end; 1 crashed; 2 a mistake in the options or
the file; 3 a file camera failed for good (without --config).""",
    "ventilator": """\
Share the cameras' frames out among the classifier workers: each worker gets frames as it asks
for them, so a slow or busy worker never holds up the others. Run one per pipeline.

Extractors send to --frontend; workers connect to --backend. When files are read faster than the
workers keep up, reading pauses (--max-backlog); a frame a worker holds past --frame-deadline, or
held by a worker gone silent, is counted lost. It keeps nothing on disk.""",
    "classifier": """\
A worker: run a detector on the cameras' frames and send what it finds to the sink.

--detector picks it: covered (a lens covered or blinded), hog (people), onnx:MODEL.onnx
(a YOLO model, on the GPU when there is one), roboflow:MODEL_ID; join several with +. Motion
is not found here: the extractor sees every frame and sends frames on only while there is
motion (a camera's detect = "always" sends them all). Point
--connect at the ventilator's --backend and --sink at the sink's --bind (repeat either for several
ventilators or sinks; every worker lists the same sinks). Start as many workers as
the detector needs; --instance N names each one and gives it its own metrics port. A frame that
cannot be read, or a detector error, reaches the sink as a result with the error (camwire status
shows the camera degraded). It keeps nothing on disk.""",
    "sink": """\
Turn what the workers found into events (motion starting and ending, an object, a camera
covered or gone offline, with the reason) and keep each camera's status.

Workers send to --bind. Each event is appended to --events (JSON lines, rotated past
--events-max-bytes), saved with a snapshot under --data-dir/snapshots (bounded by age and size),
sent to --mqtt and --webhook, and published on --publish for the recorder. --data-dir/status.db
holds the cameras' and workers' status that camwire status prints. --rules sets per-camera rules
and schedules. A full disk never stops events reaching MQTT and the webhook. SIGHUP reopens
--events (for logrotate) and reads the rules again.""",
    "recorder": """\
Record every camera into a ring of video files, and keep the video around events.

Point --subscribe at each extractor's --publish and --events at the sink's --publish. Files go
under --dir: DIR/CAMERA/<UTC start>.mkv, indexed in DIR/index.db, and clips kept around events
under DIR/kept. The ring is bounded by age (--retain), size (--max-bytes) and the free space left
on its disk (--min-free); kept clips by their own age and size (--keep-retain, --keep-max-bytes).
A full disk pauses recording (the gap is counted) until space returns. Cut a clip out with
camwire clip.""",
    "clip": """\
Write one video file of a camera between two times, cut from the recorder's files (--dir: the
recorder's --dir). The video is copied, never re-encoded; the container follows --out's name
(.mkv, .mp4).""",
    "run": """\
Run every daemon on this host, supervised: cameras in, detection, events, and recording.

Give --config camwire.toml (its cameras and every daemon's settings: MQTT, webhook, metrics
ports, the recorder when [recorder] names a dir), or cameras as --camera NAME=URL with
--detector. Flags given here override the file. Events go to --events and the file's outputs;
snapshots and status.db (for camwire status) to --data-dir; video to --record DIR. With the web
console (--web PORT, or the file's [web]) it prints the console's address in one line on stdout.
A daemon that dies is restarted; SIGHUP makes every daemon reload; SIGTERM or Ctrl-C stops them
all in order.
With --once (every source a file) it ends when every camera is done: exit 1 if a camera failed.""",
    "status": """\
Print each camera's state (online, offline, failed, degraded, covered) with its latest error, and
each worker's load, as the sink last wrote them (DATA_DIR/status.db); first, whether that is
current or the sink has stopped reporting. Works while the pipeline runs and after it stopped,
and on a --config file that is refused: a warning names FILE:LINE, the status follows (exit 0).""",
    "web": """\
The web console: every camera live (boxes, zones and motion drawn, its state and why), the
events with their snapshots and clips, the recordings on a timeline (pick a range, play it,
download it), and the workers, drops and disks; its JSON API is in the README.

It reads what the other daemons write and publish: the sink's --events file and --data-dir, the
recorder's --dir (--recordings), the extractors' --publish (--subscribe, only while someone
watches) and the sink's --publish-detections (--detections). It listens on 127.0.0.1 unless
--bind says otherwise, which needs a token ([web] token = "${CAMWIRE_WEB_TOKEN}"). A reload
needs the token when one is set; on loopback without one, anyone on this host may reload (it only
re-reads the owner's file). A --config file the daemons refuse is shown on every page until fixed.""",
    "reload": """\
Make every daemon read camwire.toml again: those on this host started with --config FILE are
signalled, and each daemon listed in its [web] daemons (or --daemon ROLE=ADDR) is asked over its
serve address, with the [security] keys, and says what came of it: applied, refused at FILE:LINE
(the file on its host), or unreachable. Exit 0 when every one took it, else 1.""",
    "check-config": """\
Check a camwire.toml as every daemon would read it, and print the cameras, sockets and settings
it comes to, secrets masked. Exit 0 when every daemon would take it; else exit 2 with
FILE:LINE: what to fix (the line the daemon itself would refuse to start with). With --daemons,
only what those daemons read, as each judges it at start: the ones a host runs (a host needs no
other daemon's model file, token or keys).""",
    "sample-clip": """\
Write the built-in sample clip (H.264: shapes moving across a street-like scene, the lens covered
for a while in the middle), to try camwire without a camera.""",
}
