"""What watches the loop besides the recorder, built from the command line: the live preview
(``--preview``) and sample collection (``--collect-uncertain``, ``device collect``).

Everything that can fail because of the user's input (a taken port, an unresolvable host, a
collection folder that cannot be written) fails while :func:`build` runs, before the camera is
opened; threads start only on ``with``, and leaving the ``with`` flushes queued samples and
stops the server.
"""

from __future__ import annotations

import os
import sys

from device.collect import SampleSaver, source_tag
from device.collection import Collection
from device.errors import UsageError

TOKEN_ENV = "MNIST_EDGE_PREVIEW_TOKEN"


class Observers:
    def __init__(self, preview=None, savers=(), out=None):
        self.preview, self.savers, self.out = preview, list(savers), out or sys.stdout

    @property
    def observers(self) -> list:
        return ([self.preview.hub] if self.preview else []) + self.savers

    def __enter__(self):
        for s in self.savers:
            s.start()
        if self.preview:
            self.preview.hub.start()
            self.preview.start()
            for url in self.preview.urls():
                print(f"preview: {url}", file=self.out, flush=True)
            if not self.preview.loopback:
                print("preview: anyone with this URL can watch the camera and save samples; "
                      "keep the token private", file=self.out, flush=True)
        return self

    def __exit__(self, *exc):
        try:
            for s in self.savers:
                s.close()
        finally:
            if self.preview:
                self.preview.close()
        return False

    def summary_lines(self) -> list[str]:
        lines = [s.summary() for s in self.savers]
        c = self.preview.collection if self.preview else None
        if c is not None and c.added and all(s.collection is not c for s in self.savers):
            lines.append(f"collection {c.folder}: {c.added} sample(s) saved from the preview page; "
                         f"{len(c)} in labels.csv, {c.bytes_used() / 1e6:.1f} MB of {c.max_bytes / 1e6:.0f} MB")
        return lines


def _collection(args, opened: dict, path: str, flag: str) -> Collection:
    """One Collection per folder, so two options naming the same folder share its lock."""
    key = os.path.realpath(path)
    if key not in opened:
        opened[key] = Collection(path, args.collect_max_mb, flag)
    return opened[key]


def build(args, source, *, label: str | None = None, count: int | None = None,
          uncertain: str | None = None, below: float | None = None) -> Observers:
    """The observers asked for: ``args`` holds the preview and collection options both verbs
    share; ``label``/``count`` are ``device collect``'s, ``uncertain``/``below`` those of
    ``run --collect-uncertain DIR --below P``."""
    tag = source_tag(source.describe())
    opened: dict = {}
    savers, preview = [], None
    if label is not None:
        savers.append(SampleSaver(_collection(args, opened, args.collection, "--collection"), tag,
                                  label=label, count=count, every_s=args.collect_every))
    if uncertain:
        savers.append(SampleSaver(_collection(args, opened, uncertain, "--collect-uncertain"),
                                  tag, below=0.8 if below is None else below, every_s=args.collect_every,
                                  background=True))
    elif below is not None:
        raise UsageError("--below P needs --collect-uncertain DIR (where to save those frames)")
    if args.preview is not None:
        from device.preview import PreviewHub, PreviewServer

        host, port = args.preview
        hub = PreviewHub(args.budget_ms, fps=args.preview_fps)
        hub.source = tag
        token = args.preview_token or os.environ.get(TOKEN_ENV) or None
        preview = PreviewServer(host, port, hub, _collection(args, opened, args.collection, "--collection"),
                                token=token)
    elif args.preview_token:
        raise UsageError("--preview-token needs --preview [HOST:]PORT")
    return Observers(preview, savers)
