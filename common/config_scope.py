"""What each daemon reads of camwire.toml: the one table a host's check is scoped by.

Several hosts may each keep a copy of one camwire.toml and each run some of the daemons; a host
has only what its own daemons need (the model file on the classifier's host, the console's token
on the console's, a camera's password where its extractor runs). So a daemon started with
``--config``, and its reload, judges only what it uses (:data:`READS`):

- its own section: typed through its settings model, its ``${VAR}``s filled in, its check hook
  (camwire.checks: its addresses, files, and the CURVE keys of the servers it connects to);
- ``[sockets]`` and ``[security]``, which every daemon reads (their shape, always);
- the camera tables where it reads them (names, sampling, detector, weight, masks, zones, ...),
  and their URLs (with their ``${VAR}`` passwords) only where it opens them: an extractor, the
  cameras it serves (``--cameras``, else all);
- ``[rules]`` and ``[upload]`` where it acts on them (the sink; the recorder's clips);
- the keys it borrows from another daemon's section (the console: the sink's ``data_dir`` and
  ``events``, the recorder's ``dir``: :data:`WEB_FROM`).

The rest of the file is read as far as it goes and never refused: a key whose ``${VAR}`` is set
nowhere is left out (``Config.unresolved``), a camera table nobody here judges that does not
validate is left out. ``check-config`` judges the whole file unless asked for the daemons of one
host; ``camwire run`` judges what it starts (:func:`run_starts`). common/ imports only common/.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from camwire.common.paths import name_list

# what the web console reads of the other daemons' sections, unless [web] says otherwise:
# its setting -> (section, key)
WEB_FROM = {"data_dir": ("sink", "data_dir"), "events": ("sink", "events"), "recordings": ("recorder", "dir")}


@dataclass(frozen=True, slots=True)
class Reads:
    """What one daemon reads of the file besides its own section, [sockets] and [security]."""

    cameras: bool = False  # the camera tables (names, sampling, detector, weight, masks, zones, ...)
    sources: bool = False  # their URLs, ${VAR} passwords filled in (an extractor opens them)
    rules: bool = False  # [rules] and each camera's rules (common.rules)
    upload: bool = False  # [upload] (common.upload), its ${VAR} keys filled in
    borrowed: tuple[tuple[str, str], ...] = ()  # (section, key) of other daemons' sections it takes


READS: dict[str, Reads] = {
    "extractor": Reads(cameras=True, sources=True),
    "ventilator": Reads(cameras=True),  # each camera's detector (routes) and weight
    "classifier": Reads(),  # nothing of the cameras: frames say what they are
    "sink": Reads(cameras=True, rules=True, upload=True),
    "recorder": Reads(cameras=True, upload=True),  # which cameras record, their own publish; clips up
    "web": Reads(cameras=True, borrowed=tuple(WEB_FROM.values())),  # names, zones, detectors, publish
    "run": Reads(cameras=True, sources=True),  # its own section; the daemons it starts come with it
}
RUN_ALWAYS = frozenset({"sink", "ventilator", "classifier", "extractor"})


@dataclass(frozen=True, slots=True)
class Scope:
    """The daemons a load judges the file for; ``served``: the cameras an extractor here serves
    (its ``--cameras``; None: every camera). :data:`WHOLE` is every daemon and every camera."""

    daemons: frozenset[str]
    served: frozenset[str] | None = None

    @classmethod
    def of(cls, daemons: Iterable[str], served: str | Iterable[str] | None = None) -> Scope:
        """A scope for ``daemons`` (names of sections: camwire.common.settings.SECTIONS);
        ValueError naming one that is not a daemon."""
        wanted = frozenset(daemons)
        unknown = sorted(wanted - set(READS))
        if unknown:
            raise ValueError(f"no daemon {unknown[0]!r}; the daemons: {', '.join(READS)}")
        names = name_list(served) if isinstance(served, str) else served
        return cls(wanted, frozenset(names) if names else None)

    @property
    def whole(self) -> bool:
        return self.daemons >= set(READS) and self.served is None

    def judges(self, section: str) -> bool:
        """Whether ``section`` (a daemon's, or run's) is judged: typed, ``${VAR}``s filled in, hook run."""
        return section in self.daemons

    def _reads(self) -> list[Reads]:
        return [READS[d] for d in self.daemons]

    @property
    def rules(self) -> bool:
        return any(r.rules for r in self._reads())

    @property
    def upload(self) -> bool:
        return any(r.upload for r in self._reads())

    @property
    def borrowed(self) -> frozenset[tuple[str, str]]:
        return frozenset(b for r in self._reads() for b in r.borrowed)

    @property
    def cameras(self) -> bool:
        """Whether any daemon judged reads the camera tables at all."""
        return any(r.cameras for r in self._reads())

    def _only_served(self) -> bool:
        """Only an extractor reads cameras here, and it serves some of them."""
        readers = {d for d in self.daemons if READS[d].cameras}
        return self.served is not None and readers == {"extractor"}

    def judges_camera(self, name: str) -> bool:
        """Whether camera ``name``'s table is judged (else left out where it does not validate)."""
        return self.cameras and (not self._only_served() or name in self.served)  # type: ignore[operator]

    def opens(self, name: str) -> bool:
        """Whether camera ``name``'s URLs are filled in (else a ``${VAR}`` set nowhere stays masked)."""
        if "run" in self.daemons:
            return True
        return "extractor" in self.daemons and (self.served is None or name in self.served)

    def serving(self, cameras: str | None) -> Scope:
        """This scope with ``cameras`` (the file's ``[extractor] cameras``) as the cameras served,
        where no ``--cameras`` said so already and an extractor is judged alone of run."""
        if self.served is not None or not isinstance(cameras, str) or not name_list(cameras) \
                or "run" in self.daemons or "extractor" not in self.daemons:
            return self  # (a value of the wrong type is the typed model's to refuse, at its line)
        return Scope(self.daemons, frozenset(name_list(cameras)))


WHOLE = Scope(frozenset(READS))


def run_starts(cfg: Any, record: bool = False, web: bool = False) -> frozenset[str]:
    """The daemons ``camwire run --config`` starts from ``cfg`` (a common.config.Config), as
    camwire.plan plans them: the sink, the ventilator, classifier workers and extractors; the
    recorder when ``[recorder]`` names a ``dir`` or run is given ``--record`` (``record``); the
    console when ``[web]`` says anything or run is given ``--web`` (``web``). A key counts as
    written even where its ``${VAR}`` is set nowhere (that is then the recorder's to refuse)."""
    def written(section: str) -> set[str]:
        return {*cfg.sections.get(section, {}), *cfg.unresolved.get(section, ())}

    roles = set(RUN_ALWAYS)
    if record or "dir" in written("recorder"):
        roles.add("recorder")
    if web or written("web"):
        roles.add("web")
    return frozenset(roles)
