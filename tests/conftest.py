"""Shared fixtures: a synthetic corpus packed once per session, and real
``dataengine serve`` processes on ephemeral loopback ports."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dataengine.server.launch import EngineExitedError, start_engine_process

TEST_KEY_BYTES = b"medstream-test-key-not-secret-0123"
CORPUS_STUDIES = 12


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "corpus(**arguments): generate_corpus arguments of the module's raw fixture;"
        " edit=function(root) changes the files afterwards",
    )


@pytest.fixture(scope="module")
def raw(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic hospital export for one test module: ``generate_corpus`` with
    the arguments of the module's marker, ``pytestmark = pytest.mark.corpus(
    studies=2, seed=1, ...)``; its ``edit`` argument, a function of the
    export's root folder, damages or changes files after."""
    from dataengine.synth import generate_corpus

    marker = request.node.get_closest_marker("corpus")
    if marker is None:
        raise pytest.UsageError(f"{request.node.nodeid}: raw needs pytest.mark.corpus(...)")
    arguments = dict(marker.kwargs)
    edit = arguments.pop("edit", None)
    root = tmp_path_factory.mktemp("raw")
    generate_corpus(root, **arguments)
    if edit is not None:
        edit(root)
    return root


@pytest.fixture(scope="session")
def raw_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dataengine.synth import generate_corpus

    raw = tmp_path_factory.mktemp("raw")
    generate_corpus(raw, studies=CORPUS_STUDIES, seed=7)
    return raw


@pytest.fixture(scope="session")
def deid_key():
    """The de-identification key ``packed_dataset`` is packed with."""
    from dataengine.deid.keys import DeidKey

    return DeidKey(TEST_KEY_BYTES)


@pytest.fixture(scope="session")
def packed_dataset(raw_corpus: Path, deid_key, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dataengine.pack import PackConfig, pack_dataset

    out = tmp_path_factory.mktemp("datasets") / "synthetic"
    pack_dataset(raw_corpus, out, PackConfig(shard_samples=4, workers=2, key=deid_key))
    return out


class EngineProcess:
    """A real ``dataengine serve`` subprocess. ``address`` is HOST:PORT."""

    def __init__(self, datasets: list[Path], *args: str) -> None:
        self.output: list[str] = []
        try:
            self.proc, self.address = start_engine_process(
                [*map(str, datasets), "--port", "0", "--workers", "2", *args],
                on_line=self.output.append,
                merge_stderr=True,
            )
        except EngineExitedError as exc:
            raise RuntimeError(f"{exc}:\n{''.join(self.output)}") from None
        self._drain = threading.Thread(target=self._pump, daemon=True)
        self._drain.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the engine and wait for it; an engine still running after
        ``timeout`` seconds has its thread stacks dumped (SIGUSR1) and killed,
        and the failure carries its output."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)
            time.sleep(1.0)
            self.proc.kill()
            self.proc.wait(10)
            self._drain.join(5)
            raise RuntimeError(
                f"engine {self.address} did not exit {timeout:.0f}s after signal {sig}:\n"
                + "".join(self.output[-300:])
            ) from None


def _engine_factory() -> Iterator:
    started: list[EngineProcess] = []

    def _start(datasets: list[Path], *args: str) -> EngineProcess:
        engine = EngineProcess(datasets, *args)
        started.append(engine)
        return engine

    yield _start
    for engine in started:  # signal all first: they drain side by side
        if engine.proc.poll() is None:
            engine.proc.send_signal(signal.SIGCONT)  # a test may have frozen it
            engine.proc.send_signal(signal.SIGTERM)
    for engine in started:
        engine.stop()


@pytest.fixture
def start_engine() -> Iterator:
    """Factory: ``start_engine([dataset_dir], *flags) -> EngineProcess``;
    every engine started is stopped (and must exit cleanly) at teardown."""
    yield from _engine_factory()


@pytest.fixture(scope="module")
def start_module_engine() -> Iterator:
    """``start_engine`` for engines shared by one test module."""
    yield from _engine_factory()


@pytest.fixture(scope="session")
def start_session_engine() -> Iterator:
    """``start_engine`` for engines shared by the whole session."""
    yield from _engine_factory()


@pytest.fixture(scope="session")
def engine(packed_dataset: Path) -> Iterator[str]:
    """HOST:PORT of an engine serving ``packed_dataset``, shared by the whole
    session: use it only for calls whose result does not depend on what other
    tests asked before (``start_engine`` gives a private one)."""
    proc = EngineProcess([packed_dataset])
    yield proc.address
    assert proc.stop() == 0, "".join(proc.output)


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator:
    """Factory: ``mount_tmpfs("16k") -> Path | None``, a real tmpfs of that
    size (a full disk on demand), or None where this process may not mount
    one; every mount is undone at teardown."""
    mounts: list[Path] = []

    def _mount(size: str) -> Path | None:
        mount = tmp_path / f"tmpfs-{len(mounts)}-{size}"
        mount.mkdir()
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0:
            return None
        mounts.append(mount)
        return mount

    yield _mount
    for mount in mounts:
        subprocess.run(["umount", "-l", str(mount)], check=False)


# Reports' words, so the tiny BPE below learns merges a real report uses; its
# byte-level alphabet encodes any text.
_TOKENIZER_TEXTS = [
    "FINDINGS: No acute intracranial haemorrhage. IMPRESSION: normal study.",
    "ECG: sinus rhythm, rate 72 bpm, QT interval normal. No ST elevation.",
    "CT chest: a 4 mm lesion in the right upper lobe; follow-up in 12 months.",
    "肺部未见明显异常 心电图窦性心律",
]


@pytest.fixture(scope="session")
def write_hf_tokenizer() -> Any:
    """Factory: ``write_hf_tokenizer(directory, style="llama"|"qwen",
    vocab_size=320) -> directory``: a tiny byte-level BPE trained on a few
    report lines (no download), saved as ``tokenizer.json`` and
    ``tokenizer_config.json`` the way ``save_pretrained`` writes them.
    ``llama``: BOS ``<s>``, EOS ``</s>``, PAD ``<pad>``; ``qwen``: EOS
    ``<|endoftext|>`` only (no BOS, no PAD)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    def _write(directory: Path, style: str = "llama", vocab_size: int = 320) -> Path:
        specials = {"llama": ["<s>", "</s>", "<pad>"], "qwen": ["<|endoftext|>"]}[style]
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        tok.train_from_iterator(_TOKENIZER_TEXTS, trainer)
        names = (
            {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}
            if style == "llama"
            else {"eos_token": "<|endoftext|>"}
        )
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, **names)
        directory.mkdir(parents=True, exist_ok=True)
        fast.save_pretrained(str(directory))
        return directory

    return _write


@pytest.fixture(scope="session")
def trainer_scrape(engine: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A real ``python -m trainer --metrics-port P --metrics-linger 120`` run
    (5 steps of 4 samples on ``engine``, found through a ``file:///``
    engines file), scraped over HTTP until it exits: ``(the last scrape
    that saw every step, the trainer's output)``. The trainer waits for a
    scrape after its last step before it exits."""
    import os
    import re
    import socket
    import sys
    import tempfile
    import urllib.request

    steps = 5
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    engines = tmp_path_factory.mktemp("trainer-scrape") / "engines.txt"
    engines.write_text(f"{engine}\n")
    cmd = [sys.executable, "-m", "trainer", "--engines", f"file://{engines}"]
    cmd += ["--steps", str(steps)]
    cmd += ["--metrics-port", str(port), "--metrics-linger", "120"]
    done = re.compile(rf"^medstream_trainer_step_seconds_count {steps}\.0$", re.M)
    final = None
    with tempfile.TemporaryFile("w+") as log:
        repo = Path(__file__).resolve().parents[1]
        with subprocess.Popen(cmd, cwd=repo, env=env, stdout=log, stderr=log, text=True) as proc:
            try:
                while proc.poll() is None:
                    try:
                        with urllib.request.urlopen(
                            f"http://127.0.0.1:{port}/metrics", timeout=10
                        ) as reply:
                            text = reply.read().decode()
                        if done.search(text):
                            final = text
                    except OSError:
                        pass  # not serving yet, or gone
                    time.sleep(0.1)
            finally:
                proc.kill()
        log.seek(0)
        output = log.read()
    assert proc.returncode == 0, output[-6000:]
    assert final is not None, f"no scrape saw step {steps}:\n{output[-6000:]}"
    return final, output
