"""What ``camwire run`` starts: its children and their command lines, planned without starting
anything (camwire.supervisor starts and watches them).

Two ways to say what runs, one planner. ``--camera NAME=URL`` flags and ``--config
camwire.toml`` are each turned into a RunSpec (the cameras, the file if any, and which of run's
own flags go on to the children); ``children(run, args, run_dir)`` builds the children from it.

With a file every child gets ``--config FILE`` (so no secret is ever on a child's command line)
and only the overrides it needs: ipc addresses in a private run folder for the sockets the file's
``[sockets]`` does not name, ``--instance N`` for worker N, and the flags given to ``run`` itself,
which still override the file. ``[run]`` holds run's own flags (``workers = 4``). Without a file
every child is told everything on its command line. Camera URLs never are: an extractor given its
camera as flags finds them in its environment (``--source '${CAMWIRE_SOURCE_0}'``, filled in by
the extractor).

Extractors: cameras with their own ``publish`` or ``metrics_port`` get an extractor each (as
``camwire-extractor@NAME`` would run them); the others share one (as ``camwire-extractor``).
With ``--once``, or without a file, every camera has an extractor of its own, given its camera
as flags.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from camwire.classifier.threads import share
from camwire.common.config import SECURITY, Config
from camwire.common.sampling import Sampling
from camwire.common.settings import RunSettings
from camwire.common.settings.model import to_argv
from camwire.common.settings.shared import DetectorOptions, RecordingOptions
from camwire.extractor.source import is_file

SOCKET_NAMES = ("frontend", "backend", "results", "events", "detections")


@dataclass(frozen=True)
class Planned:
    """One child of a run: its name, its role (the daemon it runs), ``argv`` (everything after
    ``camwire``) and what it needs in its environment but its command line must not show (``ps``
    shows every user the command lines; /proc/PID/environ only the owner and root)."""

    name: str
    role: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunCamera:
    """A camera as run plans it, from a ``--camera`` flag or a ``[cameras.NAME]`` table."""

    name: str
    sources: tuple[str, ...]
    sampling: Sampling
    realtime: bool = False  # the file's own setting (run's --realtime is passed on by itself)
    record: bool = True
    publish: str | None = None  # the file's address for an extractor serving it alone
    metrics_port: int | None = None
    detect: str | None = None
    masks: tuple[str, ...] = ()  # each a JSON list of points, as --mask takes it
    detect_size: int | None = None
    pixel_format: str | None = None


@dataclass(frozen=True)
class RunSpec:
    """What a run is asked for, however it was said."""

    cameras: list[RunCamera]
    config: Config | None = None  # the file every child reads; None: flags only
    given: frozenset[str] | None = None  # run's flags (dests) passed on; None: every one


def spec(args: RunSettings) -> RunSpec:
    """``args`` (camwire run's) as a RunSpec. Raises ValueError saying what cannot be run."""
    cfg = getattr(args, "config", None)
    if isinstance(cfg, Config):
        if args.camera:
            raise ValueError("--camera and --config: the cameras come from one or the other")
        return spec_from_config(args, cfg)
    if not args.camera:
        raise ValueError("give --config FILE or at least one --camera NAME=URL")
    if not args.detector:
        raise ValueError("--detector is needed without --config")
    return spec_from_flags(args)


def spec_from_flags(args: RunSettings) -> RunSpec:
    """The ``--camera`` flags, each sampled as run's --every/--fps/--keyframes say; every flag of
    run's goes on to the children."""
    names = [n for n, _ in args.camera]
    if len(set(names)) != len(names):
        raise ValueError("camera names must be unique")
    if args.once and not all(is_file(u) for _, urls in args.camera for u in urls):
        raise ValueError("--once needs every source to be a file")
    sampling = Sampling(every=args.every, fps=args.fps, keyframes=args.keyframes)
    return RunSpec([RunCamera(name, tuple(urls), sampling) for name, urls in args.camera])


def spec_from_config(args: RunSettings, cfg: Config) -> RunSpec:
    """A run of the whole file: every child reads it (--config) and gets only what it must."""
    if not cfg.cameras:
        raise ValueError(f"{cfg.path}: no [cameras.NAME] to run")
    if args.once and not all(is_file(u) for c in cfg.cameras.values() for u in c.sources):
        raise ValueError("--once needs every camera's sources to be files")
    if args.once and (looping := [c.name for c in cfg.cameras.values() if c.loop]):
        raise ValueError(f"--once: camera {', '.join(looping)} has loop = true, so it never ends")
    cameras = [RunCamera(c.name, c.sources, c.sampling, realtime=c.realtime, record=c.record, publish=c.publish,
                         metrics_port=c.metrics_port, detect=c.detect,
                         masks=tuple(json.dumps(m.to_list()) for m in c.masks), detect_size=c.detect_size,
                         pixel_format=c.pixel_format)
               for c in cfg.cameras.values()]
    return RunSpec(cameras, cfg, frozenset(getattr(args, "given", set())))


def plan(args: RunSettings, run_dir: Path) -> list[Planned]:
    """The children of a run, in start order: sink, ventilator, workers, recorder, extractors, web.
    Raises ValueError saying what cannot be run."""
    return children(spec(args), args, run_dir)


def sampling_argv(s: Sampling) -> list[str]:
    """``s`` as the extractor's flags."""
    return ["--keyframes"] if s.keyframes else ["--fps", str(s.fps)] if s.fps else ["--every", str(s.every)]


def children(run: RunSpec, args: RunSettings, run_dir: Path) -> list[Planned]:
    """The children of ``run``: each told on its command line what the file does not say."""
    w = _Wiring(run, args, run_dir)
    out = [w.sink(), w.ventilator(), *w.workers()]
    if w.record_dir:
        out.append(w.recorder())
    out += w.extractors()
    if w.web:
        out.append(w.console())
    return out


class _Wiring:
    """One run's addresses and what each child is told: with a file, only the sockets it does
    not name (``own``, ipc in the run folder) and the flags given to run; without one, all."""

    def __init__(self, run: RunSpec, args: RunSettings, run_dir: Path) -> None:
        self.run, self.args, cfg = run, args, run.config
        self.file = cfg is not None
        self.sockets = cfg.sockets if cfg else {}
        self.sections: dict[str, dict[str, Any]] = cfg.sections if cfg else {}
        self.cfg_argv = ["--config", str(cfg.path)] if cfg else []
        self.own = {k: f"ipc://{run_dir}/{k}" for k in SOCKET_NAMES if k not in self.sockets}  # the file names none
        self.names = [c.name for c in run.cameras]
        self.record_dir = args.record if self.told("record") else self.sections.get("recorder", {}).get("dir")
        self.web = bool(self.sections.get("web")) or bool(self.told("web") and args.web)
        self.events = (["--events", args.events] if self.told("events")
                       or "events" not in self.sections.get("sink", {}) else [])
        # extractors: a camera with its own publish/metrics port alone, the others together; with
        # --once each alone, and given its camera as flags: an extractor with --config never exits on
        # its own (a service), and with --once every source is a file (no secret on a command line)
        self.grouped = self.file and not args.once
        alone = [c.name for c in run.cameras if not self.grouped or c.publish or c.metrics_port]
        shared = [n for n in self.names if n not in alone]
        self.groups = [(f"extractor-{n}", [n]) for n in alone] + ([("extractor", shared)] if shared else [])
        # with a file every extractor publishes, as its unit would; without one, only to a
        # recorder or the web console
        self.publish = {c.name: c.publish or f"ipc://{run_dir}/publish-{c.name}" for c in run.cameras
                        if c.name in alone and (self.file or self.record_dir or self.web)}
        for n in shared:
            self.publish[n] = self.sockets.get("frames") or f"ipc://{run_dir}/publish-shared"

    def told(self, dest: str) -> bool:
        """Whether run passes its own flag ``dest`` on."""
        return self.run.given is None or dest in self.run.given

    def passed(self, words: list[Any]) -> list[str]:
        """Of ``[--flag, value, ...]``, the pairs whose flag is passed on and whose value is set."""
        return [str(w) for i in range(0, len(words), 2) if self.told(words[i][2:].replace("-", "_"))
                and words[i + 1] is not None for w in words[i:i + 2]]

    def over(self, name: str, flag: str) -> list[str]:
        """``flag`` with run's own address for socket ``name``, if the file names none."""
        return [flag, self.own[name]] if name in self.own else []

    def subscribe(self, cameras: list[str]) -> list[str]:
        return [a for addr in dict.fromkeys(self.publish[n] for n in cameras) for a in ("--subscribe", addr)]

    def sink(self) -> Planned:
        args = self.args
        argv = ["sink", *self.cfg_argv, *self.over("results", "--bind"), *self.events,
                *self.passed(["--data-dir", args.data_dir, "--rules", args.rules])]
        if self.record_dir:
            argv += self.over("events", "--publish")
        if self.web:
            argv += self.over("detections", "--publish-detections")
        if args.once:
            argv += ["--exit-when-drained", ",".join(self.names)]
        return Planned("sink", "sink", argv)

    def ventilator(self) -> Planned:
        return Planned("ventilator", "ventilator", ["ventilator", *self.cfg_argv, *self.over("frontend", "--frontend"),
                                                    *self.over("backend", "--backend")])

    def workers(self) -> list[Planned]:
        # this host's cores shared among the workers run starts here, unless run or the file says
        threads = ([] if self.told("threads") and self.args.threads or "threads" in self.sections.get("classifier", {})
                   else ["--threads", str(share(self.args.workers))])
        out = []
        for i in range(1, self.args.workers + 1):
            # named classifier-N as the child is; with a file by --instance N, which also takes the
            # file's metrics_port + N
            name = f"classifier-{i}"
            naming = ["--instance", str(i)] if self.file else ["--name", name]
            out.append(Planned(name, "classifier",
                               ["classifier", *self.cfg_argv, *naming, *self.over("backend", "--connect"),
                                *self.over("results", "--sink"), *to_argv(self.args, DetectorOptions, self.told),
                                *threads]))
        return out

    def recorder(self) -> Planned:
        recorded = [c.name for c in self.run.cameras if c.record]
        # with a file the recorder's paused/resumed events go to the sink (--sink)
        argv = ["recorder", *self.cfg_argv, *self.over("events", "--events"),
                *(self.over("results", "--sink") if self.file else []), *to_argv(self.args, RecordingOptions, self.told),
                *(["--dir", self.record_dir] if self.told("record") else []), *self.subscribe(recorded)]
        if self.args.once:
            argv += ["--exit-when-ended", ",".join(recorded)]
        return Planned("recorder", "recorder", argv)

    def extractors(self) -> list[Planned]:
        args, sections = self.args, self.sections
        enc = (["--publish-enc", args.record_enc] if self.told("record_enc")
               or "publish_enc" not in sections.get("extractor", {}) else [])
        skip = {"cameras", "metrics_port", "publish", "push", *({"publish_enc"} if enc else set())}
        cameras = {c.name: c for c in self.run.cameras}
        out = []
        for child_name, group in self.groups:
            argv, env = ["extractor"], {}
            if group[0] in self.publish:
                argv += ["--publish", self.publish[group[0]]]
                if self.record_dir:
                    argv += [*enc, "--publish-wait", "10"]  # a file waits for the recorder: recorded from frame 0
            if self.told("realtime") and args.realtime:
                argv.append("--realtime")
            if self.grouped:  # the file's cameras, read from the file
                argv += [*self.cfg_argv, *self.over("frontend", "--push"), "--cameras", ",".join(group)]
            else:
                cam = cameras[group[0]]
                # each URL through the environment: the extractor fills ${VAR} in (common.env.expand)
                env = {f"CAMWIRE_SOURCE_{i}": u for i, u in enumerate(cam.sources)}
                argv += ["--camera", cam.name, *(w for var in env for w in ("--source", f"${{{var}}}")),
                         "--push", self.own.get("frontend") or self.sockets["frontend"], *sampling_argv(cam.sampling),
                         *(["--realtime"] if cam.realtime and not self.told("realtime") else []),
                         # its motion gate and masks, as the file says
                         *(["--detect", cam.detect] if cam.detect else []),
                         *(w for m in cam.masks for w in ("--mask", m)),
                         *(["--metrics-port", str(cam.metrics_port)] if cam.metrics_port else []),
                         *_flag_words(sections.get("extractor", {}), skip),
                         # after [extractor]'s: the camera's own detection size and pixels win, as
                         # they do in an extractor reading the file
                         *(["--detect-size", str(cam.detect_size)] if cam.detect_size else []),
                         *(["--pixel-format", cam.pixel_format] if cam.pixel_format else []),
                         *_flag_words({SECURITY[k]: v for k, v in sections.get("security", {}).items()}, set())]
            out.append(Planned(child_name, "extractor", argv, env))
        return out

    def console(self) -> Planned:
        args = self.args
        argv = ["web", *self.cfg_argv, *self.over("detections", "--detections"), *self.over("results", "--sink"),
                *(["--port", str(args.web)] if self.told("web") else []), *self.events,
                *self.passed(["--data-dir", args.data_dir]),
                *(["--recordings", self.record_dir] if self.told("record") and self.record_dir else []),
                *self.subscribe(list(self.publish))]
        return Planned("web", "web", argv)


def _flag_words(section: dict[str, Any], skip: set[str]) -> list[str]:
    """A file section's values as flags (for a child that cannot take --config): no secrets here."""
    words: list[str] = []
    for key, value in section.items():
        if key in skip:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            words.append(flag)
        elif value is not False:
            words += [w for v in (value if isinstance(value, list) else [value]) for w in (flag, str(v))]
    return words
