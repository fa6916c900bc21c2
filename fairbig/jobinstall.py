"""Install what one job needs with git and git-annex alone (``jobstep install``).

``datalad get`` of a job's inputs costs a Python process that imports datalad (about
0.6 CPU-s), and every subdataset it installs runs a ``git annex init`` that enables each
special remote marked autoenable by starting its helper: the ORA remote's is a Python
process started three times, about 1 CPU-s per dataset. A job needs few datasets (the
input dataset, its subject's dataset, the container dataset), so this does for them
what datalad's install does, with git:

- clone from the RIA store the parent names (its subdataset source candidate, else the
  ``datalad-url`` the parent recorded), only if that store is one the job may use;
- check out the commit the parent records; a dataset the job needs only a part of is
  checked out sparse to that part (the input dataset of 42,715 subject datasets);
- ``git annex init --no-autoenable``, then enable only the autoenable ORA remotes whose
  URL is one of the job's stores. Under the git-annex version fairbig pins, whose
  ``init`` writes exactly three keys for such a remote (and marks it verified
  ``automatic``), this writes them without the helper; under any other version it asks
  ``git annex enableremote`` and confirms it with ``verifyremote`` as printed;
- then ``git annex get`` of what the job reads.

A dataset no allowed store holds is installed by ``datalad get -n`` as before. The
record the job commits (``datalad containers-run``) is the same either way: it names
paths and commits, not how they were installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from .gitcmd import GITLINK, git, ls_tree
from .stores import RiaStore, local_root, waiting_for

CANDIDATE_KEY = "datalad.get.subdataset-source-candidate-200origin"
ORA = "ora"


def store_base(url: str) -> str:
    """A store URL without its ``#dataset`` part or trailing slash."""
    return url.partition("#")[0].rstrip("/")


def store_repo(url: str, dsid: str) -> Path | None:
    """The repository ``url`` (``ria+file:///store#id``, ``#~alias`` or ``#{id}``) names
    for dataset ``dsid``; None for a URL that is no local RIA store."""
    base, _, frag = url.partition("#")
    if local_root(base) is None:
        return None
    if frag.startswith("~"):
        return RiaStore(base.rstrip("/")).root / "alias" / frag[1:]
    return RiaStore(base.rstrip("/")).dataset_dir(frag.replace("{id}", dsid) or dsid)


@dataclass(frozen=True)
class Remote:
    """A special remote as the git-annex branch's remote.log describes it (newest line)."""

    uuid: str
    config: dict[str, str]

    @property
    def name(self) -> str:
        return self.config.get("name", "")


def parse_remote_log(text: str) -> list[Remote]:
    """The newest configuration of each special remote in a ``remote.log``: lines of
    ``UUID key=value ... timestamp=Ns``; values with spaces are not expected of ORA."""
    newest: dict[str, tuple[float, dict[str, str]]] = {}
    for line in text.splitlines():
        uuid, *fields = line.split()
        conf = dict(f.partition("=")[::2] for f in fields)
        stamp = float(conf.pop("timestamp", "0s").rstrip("s") or 0)
        if uuid not in newest or stamp >= newest[uuid][0]:
            newest[uuid] = (stamp, conf)
    return [Remote(u, c) for u, (_, c) in newest.items()]


def usable(remote: Remote, stores: set[str]) -> bool:
    """An ORA remote that git-annex itself would enable at init (autoenable) and whose
    store is one the job may use."""
    c = remote.config
    return (c.get("type") == "external" and c.get("externaltype") == ORA
            and c.get("autoenable") == "true" and bool(remote.name)
            and store_base(c.get("url", "")) in stores)


def ora_cost(remote: Remote) -> str:
    """The cost the ORA helper answers GETCOST with, as git-annex caches it: 100 for a
    store on a local file system, 200 otherwise (datalad.distributed.ora_remote)."""
    return "100.0" if local_root(store_base(remote.config.get("url", ""))) else "200.0"


def enable_remotes(ds: Path, stores: set[str], config_keys: bool) -> list[str]:
    """Enable the usable special remotes of ``ds`` (annex-initialised); their names."""
    log = git(ds / ".git", "cat-file", "-p", "git-annex:remote.log", check=False).stdout
    names = []
    for remote in parse_remote_log(log):
        if not usable(remote, stores):
            continue
        name = remote.name
        # git-annex asks an external remote without a cost for one at its first use, by
        # starting its helper (about 0.15 CPU-s for ORA), also for a remote the command
        # does not use (`copy --to output-storage` starts input-storage's); the cost ORA
        # reports (a local store is cheap) written beforehand, as git-annex caches it
        git(ds / ".git", "config", f"remote.{name}.annex-cost", ora_cost(remote))
        if config_keys:  # what the pinned git-annex's init writes for an autoenable remote
            for key, value in (("annex-externaltype", ORA), ("annex-uuid", remote.uuid),
                               ("annex-verified", "automatic")):
                git(ds / ".git", "config", f"remote.{name}.{key}", value)
        else:
            annex(ds, "enableremote", name)
            said = annex(ds, "verifyremote", name, check=False)
            safe = re.search(r"--safe (\S+)", said.stdout + said.stderr)
            if safe:
                annex(ds, "verifyremote", name, "--safe", safe.group(1))
        names.append(name)
    return names


def annex(ds: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``git annex ARGS`` in the work tree ``ds``."""
    proc = subprocess.run(["git", "annex", *args], cwd=ds, capture_output=True, text=True,
                          check=False)
    if check and proc.returncode:
        raise SystemExit(f"fairbig job: git annex {' '.join(args)} in {ds} failed "
                         f"({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def annex_version() -> str:
    """The running git-annex's version without its build suffix (10.20261026-gXXXX)."""
    out = subprocess.run(["git", "annex", "version", "--raw"], capture_output=True,
                         text=True, check=False).stdout.strip()
    return out.split("-")[0]


def submodule(parent: Path, path: str) -> dict[str, str]:
    """The ``.gitmodules`` entry of ``path`` in ``parent``: id, url, datalad-url."""
    out = git(parent / ".git", "config", "-f", str(parent / ".gitmodules"), "-z",
              "--get-regexp", r"^submodule\..*", check=False).stdout
    entries: dict[str, dict[str, str]] = {}
    for rec in filter(None, out.split("\0")):
        key, _, value = rec.partition("\n")
        name, _, field = key.removeprefix("submodule.").rpartition(".")
        entries.setdefault(name, {})[field] = value
    return next((e for e in entries.values() if e.get("path") == path), {})


SPARSE_MAX = 200  # non-cone patterns cost (patterns x paths): beyond this, check out all


def sparse_patterns(git_dir: Path, sha: str, entry: str) -> list[str] | None:
    """Sparse-checkout patterns for a dataset of whose subdatasets the job needs only
    ``entry``: every file and folder of its top level, of its subdatasets only that one
    (not 42,715 empty subject folders). None where there is nothing to leave out
    (``entry`` is no subdataset, or the only one) or it takes more than SPARSE_MAX
    patterns; a folder is never left out, whatever the job reads beside its inputs."""
    keep, others, is_link = [], 0, False
    for e in ls_tree(git_dir, sha):
        name = "/" + re.sub(r"([*?\[\\])", r"\\\1", e.path)
        if e.mode == GITLINK and e.path != entry:
            others += 1
            continue
        is_link = is_link or (e.path == entry and e.mode == GITLINK)
        keep.append(name + "/" if e.type == "tree" else name)
        if len(keep) > SPARSE_MAX:
            return None
    return keep if is_link and others else None


# Below a template these are immutable once written (git and git-annex write new files
# and rename): a job's copy hard-links them, as `git clone --local` links git's objects
LINKED = (".git/objects/", ".git/annex/objects/")
COMPLETE = ".fairbig-template"  # written last into a template: it is whole


def copy_template(template: Path, ds: Path) -> None:
    """Copy ``template`` to ``ds``: git's and git-annex's objects hard-linked (a copy
    on another file system), every other file copied, as the job may change it."""
    root = len(str(template)) + 1

    def link_or_copy(src: str, dst: str) -> None:
        if src[root:].startswith(LINKED):
            try:
                os.link(src, dst)
                return
            except OSError:  # another file system: a copy, as correct and only slower
                pass
        shutil.copy2(src, dst)

    shutil.copytree(template, ds, symlinks=True, copy_function=link_or_copy,
                    ignore=shutil.ignore_patterns(COMPLETE), dirs_exist_ok=True)


class Installer:
    """Installs datasets below the clone ``top`` from the stores in ``stores``.

    ``shared``: paths every job of the analysis reads alike (the container image); the
    dataset holding one is installed once per node into ``templates`` (a node-local
    cache) with that content, and each job gets a copy of it whose git and annex
    objects are hard links: no clone, annex init, special-remote helper or content
    copy per job (a real image is gigabytes)."""

    def __init__(self, top: Path, stores: Iterable[str], config_keys: bool,
                 shared: Iterable[str] = (), templates: Path | None = None) -> None:
        self.top = top
        self.stores = {store_base(s) for s in stores}
        self.config_keys = config_keys
        self.fallbacks: list[str] = []
        self.shared = {s.strip("/") for s in shared} if templates else set()
        self.templates = templates
        self.from_template: set[Path] = set()
        self.uninitialised: set[Path] = set()

    def shared_below(self, ds: Path) -> list[str]:
        """The shared paths inside dataset ``ds``, relative to it."""
        rel = ds.relative_to(self.top).as_posix()
        return [s[len(rel) + 1:] for s in self.shared if s.startswith(rel + "/")]

    def template(self, ds: Path, entry: dict[str, str], sha: str,
                 make: Callable[[Path], None]) -> bool:
        """Make ``ds`` a copy of the node's template of this dataset at ``sha`` with its
        shared content, building the template first (``make`` installs into a
        directory) under a lock; False where no template applies."""
        wanted = self.shared_below(ds)
        dsid = entry.get("datalad-id", "")
        if not wanted or not dsid or self.templates is None:
            return False
        base = self.templates / "datasets"
        base.mkdir(parents=True, exist_ok=True)
        done = base / f"{dsid}@{sha}"
        if not (done / COMPLETE).exists():
            with waiting_for(base / f"{dsid}@{sha}.lock"):
                if not (done / COMPLETE).exists():
                    shutil.rmtree(done, ignore_errors=True)
                    building = base / f".{dsid}@{sha}.{os.getpid()}"
                    shutil.rmtree(building, ignore_errors=True)
                    make(building)
                    annex(building, "get", "-q", "--", *wanted)
                    (building / COMPLETE).write_text(f"{dsid} {sha}\n")
                    os.rename(building, done)
        copy_template(done, ds)
        self.from_template.add(ds)
        return True

    def source(self, parent: Path, entry: dict[str, str]) -> tuple[Path, str] | None:
        """The store repository to clone a subdataset from, and the candidate template
        its own subdatasets inherit (as datalad's clone from a RIA store sets it)."""
        dsid = entry.get("datalad-id", "")
        cand = git(parent / ".git", "config", CANDIDATE_KEY, check=False).stdout.strip()
        for url in (cand, entry.get("datalad-url", "")):
            if not dsid or store_base(url) not in self.stores:
                continue
            repo = store_repo(url, dsid)
            if repo is not None and (repo / "HEAD").exists():
                return repo, f"{store_base(url)}#{{id}}"
        return None

    def install(self, parent: Path, rel: str, sha: str, sparse: str | None) -> bool:
        """Install subdataset ``rel`` of ``parent`` at commit ``sha``; False if no allowed
        store has it (the caller falls back to datalad)."""
        entry = submodule(parent, rel)
        found = self.source(parent, entry)
        if found is None:
            return False
        repo, candidate = found
        ds = parent / rel

        def make(target: Path) -> None:
            self.clone(target, repo, candidate, sha, sparse)
            self.annex_init(target)

        if self.template(ds, entry, sha, make):
            return True
        self.clone(ds, repo, candidate, sha, sparse)
        self.uninitialised.add(ds)  # until content is wanted from it (get)
        return True

    def annex_init(self, ds: Path) -> None:
        """``git annex init`` of a clone whose origin has an annex, its usable remotes
        enabled. Only where content is got: a dataset the job passes through (the input
        dataset of the subjects) stays a git clone, as git-annex's init in it costs
        about 20 git processes."""
        self.uninitialised.discard(ds)
        gd = ds / ".git"
        if git(gd, "rev-parse", "-q", "--verify", "refs/remotes/origin/git-annex",
               check=False).returncode == 0:
            git(gd, "config", "remote.origin.annex-ignore", "true")
            annex(ds, "init", "-q", "--no-autoenable")
            enable_remotes(ds, self.stores, self.config_keys)

    def clone(self, ds: Path, repo: Path, candidate: str, sha: str,
              sparse: str | None) -> None:
        """Clone ``repo`` into ``ds`` at ``sha``, sparse to ``sparse``."""
        subprocess.run(["git", "clone", "-q", "--no-checkout", str(repo), str(ds)], check=True)
        gd = ds / ".git"
        git(gd, "config", CANDIDATE_KEY, candidate)
        patterns = sparse_patterns(gd, sha, sparse) if sparse is not None else None
        if patterns:
            subprocess.run(["git", "sparse-checkout", "set", "--no-cone", "--stdin"],
                           cwd=ds, input="\n".join(patterns) + "\n", text=True, check=True)
        head = git(gd, "rev-parse", "HEAD", check=False).stdout.strip()
        # datalad leaves the branch checked out when it is at the recorded commit
        target = ["-f"] if head == sha else ["--detach", sha]
        subprocess.run(["git", "checkout", "-q", *target], cwd=ds, check=True)

    def dataset_of(self, path: str) -> tuple[Path, str]:
        """Install the datasets on the way to ``path``; the innermost one and ``path``
        relative to it ("" if ``path`` is that dataset)."""
        ds, rest = self.top, path.strip("/")
        while rest:
            parts = rest.split("/")
            prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
            # ls-tree lists every entry below a pathspec it descends into (inputs/data
            # for the pathspecs inputs, inputs/fmriprep): only a prefix of path counts
            link = next((e for e in ls_tree(ds / ".git", "HEAD", *prefixes)
                         if e.mode == GITLINK and e.path in prefixes), None)
            if link is None:
                return ds, rest
            after = rest[len(link.path):].strip("/")
            sub = ds / link.path
            if not (sub / ".git").exists():
                sparse = after.split("/")[0] if after else None
                if not self.install(ds, link.path, link.sha, sparse):
                    self.fallbacks.append(str(sub.relative_to(self.top)))
                    subprocess.run(["datalad", "get", "-n", "-d", str(self.top),
                                    str(sub)], check=True, capture_output=True)
            ds, rest = sub, after
        return ds, rest

    def get(self, paths: Iterable[str]) -> None:
        """Install and get the content of ``paths`` (relative to the top)."""
        wanted: dict[Path, list[str]] = {}
        for path in paths:
            ds, rest = self.dataset_of(path)
            wanted.setdefault(ds, []).append(rest or ".")
        for ds, rels in wanted.items():
            if ds in self.uninitialised:
                self.annex_init(ds)
            if ds in self.from_template:  # its shared content came with the copy
                rels = [r for r in rels if r not in self.shared_below(ds)]
                if not rels:
                    continue
            if annex(ds, "get", "-q", "--", *rels, check=False).returncode:
                # content only a remote outside the job's stores has (the web, a datalad
                # special remote): git-annex's own init enables the autoenable remotes
                # as datalad's install did, then the get is asked again
                print(f"fairbig job: {' '.join(rels)} in {ds} is not all in the job's "
                      "stores; enabling the dataset's autoenable remotes", file=sys.stderr)
                annex(ds, "init", "-q")
                annex(ds, "get", "-q", "--", *rels)


def install(top: Path, stores: list[str], pinned: str, paths: list[str],
            shared: Iterable[str] = (), templates: Path | None = None) -> list[str]:
    """Enable the top dataset's remotes, install and get ``paths`` (those in ``shared``
    from a node-local template in ``templates``); the datasets that fell back to
    datalad."""
    inst = Installer(top, stores, config_keys=bool(pinned) and annex_version() == pinned,
                     shared=shared, templates=templates)
    enable_remotes(top, inst.stores, inst.config_keys)
    inst.get(paths)
    return inst.fallbacks
