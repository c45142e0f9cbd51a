"""deploy/ is code: every ``dataengine`` and trainer command line in the
Kubernetes manifests and Slurm job scripts parses with the real CLI parsers.
A renamed flag fails here, not in an operator's cluster (a renamed metric
fails in ``test_observability.py``, which scrapes a live engine and trainer
for every metric the dashboards and rules name).

Shell variables (``"$DATASET_DIR"``, Kubernetes ``$(DATASET)``) stand for
values the job fills in; they are replaced by a placeholder that every flag
type accepts (``1``), and ``"${array[@]}"`` / ``$TRAINER_ARGS`` (optional
extra arguments) by nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dataengine.cli import build_parser
from trainer.train import parse_args as trainer_parse_args

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
# Optional extra arguments: expand to nothing.
_EMPTY_VARS = {"TRAINER_ARGS"}
_VAR = re.compile(r"\$\{(\w+)\[@\]\}|\$\{(\w+)[^}]*\}|\$\((\w+)\)|\$(\w+)")
_SHELL_STOP = {";", "&&", "||", "|", "&", "then", "do", "done", "fi"}


def _expand(token: str) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(1):  # an array expansion: optional flags
            return ""
        name = m.group(2) or m.group(3) or m.group(4)
        return "" if name in _EMPTY_VARS else "1"

    return _VAR.sub(sub, token)


def _invocations(text: str) -> Iterator[tuple[str, list[str]]]:
    """``("dataengine" | "trainer", argv)`` for each command line in shell
    ``text``, including those inside ``bash -c '...'`` strings."""
    text = text.replace("\\\n", " ")
    for line in text.splitlines():
        if "dataengine" not in line and "trainer" not in line:
            continue
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:
            continue  # a line inside a multi-line quoted string: seen whole below
        yield from _from_tokens(tokens)
    # Multi-line quoted arguments (bash -c '...') are split as a whole too.
    for m in re.finditer(r"bash -c '([^']*)'", text):
        yield from _invocations(m.group(1))


def _from_tokens(tokens: list[str]) -> Iterator[tuple[str, list[str]]]:
    for i, tok in enumerate(tokens):
        if " " in tok:
            continue  # a quoted script: handled by the bash -c pass
        if Path(tok).name == "dataengine" and i + 1 < len(tokens):
            yield "dataengine", _args(tokens[i + 1 :])
        elif tok == "trainer" and i > 0 and tokens[i - 1] in ("-m", "--module"):
            yield "trainer", _args(tokens[i + 1 :])


def _args(tokens: list[str]) -> list[str]:
    out = []
    for tok in tokens:
        if tok in _SHELL_STOP or tok.startswith((">", "2>", "<")) or tok.endswith(";"):
            break
        expanded = _expand(tok)
        if expanded:
            out.append(expanded)
    return out


def _container_invocations(doc: dict) -> Iterator[tuple[str, list[str]]]:
    """Command lines of every (init) container of a Kubernetes object: its
    command and args, its exec probes and its lifecycle hooks."""
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec", spec.get("jobTemplate", {}))
    if "jobTemplate" in spec:  # a CronJob
        pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
        command = container.get("command")
        args = [str(a) for a in container.get("args", [])]
        if command is None and str(container.get("image", "")).startswith("medstream/dataengine"):
            yield "dataengine", [_expand(a) for a in args]  # the image's ENTRYPOINT
        elif command is not None:
            yield from _invocations(shlex.join([*command, *args]))
            for a in args:
                if "\n" in a or " " in a:
                    yield from _invocations(a)
        probes = ("startupProbe", "readinessProbe", "livenessProbe")
        execs = [container.get(p, {}).get("exec") for p in probes]
        hooks = container.get("lifecycle", {})
        execs += [hooks.get(h, {}).get("exec") for h in ("postStart", "preStop")]
        for exec_ in execs:
            if exec_ is not None:
                yield from _invocations(shlex.join(exec_["command"]))


def _manifest_files() -> list[Path]:
    return sorted((DEPLOY / "kubernetes").glob("*.yaml"))


def _script_files() -> list[Path]:
    return sorted((DEPLOY / "slurm").glob("*.sbatch"))


def _collect() -> list[tuple[str, str, list[str]]]:
    found = []
    for path in _manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict):
                for prog, argv in _container_invocations(doc):
                    found.append((f"{path.name}", prog, argv))
    for path in _script_files():
        for prog, argv in _invocations(path.read_text()):
            found.append((path.name, prog, argv))
    unique = {(w, p, tuple(a)): None for w, p, a in found}  # a script seen by two passes
    return [(w, p, list(a)) for w, p, a in unique]


_COMMANDS = _collect()


def _parse(prog: str, argv: list[str]) -> argparse.Namespace:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            if prog == "dataengine":
                return build_parser().parse_args(argv)
            return trainer_parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"{prog} {shlex.join(argv)}: {err.getvalue().strip()}") from exc


def test_every_deploy_file_has_its_commands_found() -> None:
    """Each job script and each manifest that runs our programs is covered
    (so the parse test below cannot pass by finding nothing)."""
    files = {name for name, _, _ in _COMMANDS}
    for path in _script_files():
        assert path.name in files, f"no dataengine/trainer command found in {path}"
    subcommands = {argv[0] for _, prog, argv in _COMMANDS if prog == "dataengine" and argv}
    assert {"serve", "pack", "prepare", "stats", "health"} <= subcommands
    assert any(prog == "trainer" for _, prog, _ in _COMMANDS)


@pytest.mark.parametrize(
    ("where", "prog", "argv"),
    _COMMANDS,
    ids=[f"{w}:{p}:{a[0] if a else ''}" for w, p, a in _COMMANDS],
)
def test_deploy_command_lines_parse(where: str, prog: str, argv: list[str]) -> None:
    if prog == "dataengine" and argv and argv[0] in ("--help", "-h"):
        return  # the image's default CMD
    _parse(prog, argv)


def test_prepare_job_pipelines_are_valid_pipeline_specs() -> None:
    """The job JSON a prepare Job mounts (``--pipeline``) is a PipelineSpec."""
    from dataengine.pipeline.spec import PipelineSpec

    found = 0
    for path in _manifest_files():
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
                for name, text in doc.get("data", {}).items():
                    if name.endswith(".json"):
                        PipelineSpec.from_dict(json.loads(text), where=f"{path.name}: {name}")
                        found += 1
    assert found, "no pipeline JSON found in a ConfigMap"


def test_trainers_discover_engines_live() -> None:
    """The k8s trainers resolve the engines' headless Service (its name, its
    namespace, its gRPC port); the Slurm trainers read the engines file the
    script keeps current. Neither needs a restart to scale."""
    from dataengine.discovery import parse_source

    docs = {
        (d["kind"], d["metadata"]["name"]): d
        for path in _manifest_files()
        for d in yaml.safe_load_all(path.read_text())
        if isinstance(d, dict) and "metadata" in d
    }
    service = docs[("Service", "engine-headless")]
    namespace = docs[("Namespace", "medstream")]["metadata"]["name"]
    grpc_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "grpc")
    source = parse_source(docs[("ConfigMap", "trainer-engines")]["data"]["ENGINES"])
    assert source.kind == "dns"
    assert source.host == f"engine-headless.{namespace}.svc.cluster.local"
    assert source.port == grpc_port
    script = (DEPLOY / "slurm" / "engines-and-trainer.sbatch").read_text()
    trainers = [argv for w, p, argv in _COMMANDS if p == "trainer" and w.endswith(".sbatch")]
    assert trainers
    for argv in trainers:
        assert argv[argv.index("--engines") + 1].startswith("file://")
    assert 'mv -f "$tmp" "$ENGINES_FILE"' in script  # replaced atomically


def test_a_wrong_flag_is_caught() -> None:
    """The checker itself: a misspelt flag in a job script fails to parse."""
    ((prog, argv),) = list(_invocations("srun dataengine serve /d --no-such-flag 3\n"))
    with pytest.raises(AssertionError, match="no-such-flag"):
        _parse(prog, argv)
