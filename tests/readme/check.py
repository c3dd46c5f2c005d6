#!/usr/bin/env python3
"""Runs the README's shell blocks as a new user would: in the order written, on a clean
checkout, and checks the answers the README shows.

    python3 tests/readme/check.py [README]

The checkout is a fresh clone of HEAD in a temporary folder; it shares the repository's build
folders (`target`, `plugins/target`), so only this project's own crates are compiled again.

Each ```sh block runs in a bash of its own, started in the checkout's root, one command at a
time (a command is as many lines as bash needs to read it whole), and every command must exit
with 0. What the README shows a command answering is checked:

- a comment after the command, on its line or on the lines below it, that starts with `{`,
  `...` or (continuing the line above) `"` is the answer, where `...` stands for anything;
  a request that only reads (`curl` without `-X` or `-d`) is asked again for up to 30 s, since
  what it shows (an order's status) may come a moment later;
- a copy of a `.wasm` into a plugins folder is a deployment, and the next command waits until a
  running host's log says the plugin was loaded, as a reader would watch it.

Commands that serve (`make run`, `cargo run -- run`, `eventhost run`, `python3 -m http.server`,
...) run in the background until a later block starts servers of its own; the block goes on once
they answer HTTP. An HTML comment right before a block changes how it runs:

- `<!-- readme-test: skip REASON -->`: not run (the reason is printed);
- `<!-- readme-test: serving COMMAND -->`: COMMAND serves first, for a block that talks to a
  host the text before it describes;
- `<!-- readme-test: source PATH -->` (any language): the block quotes PATH, so each of its lines
  must stand in that file, in the same order.
"""

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The first `make run` builds the host and every plugin.
SERVE_TIMEOUT = 30 * 60
ANSWER_TIMEOUT = 30
DEPLOY_TIMEOUT = 60
COMMAND_TIMEOUT = 30 * 60


class Block:
    def __init__(self, lang, line, text, note):
        self.lang, self.line, self.text, self.note = lang, line, text, note


def blocks(readme):
    """The fenced blocks of `readme` with a language, with the line each starts on and its
    annotation."""
    lines = readme.read_text().splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = re.fullmatch(r"```(\w+)", lines[i].strip())
        if fence:
            start, body = i + 1, []
            i += 1
            while lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            before = lines[start - 2].strip() if start >= 2 else ""
            note = re.fullmatch(r"<!-- readme-test: (.*) -->", before)
            note = note.group(1) if note else None
            found.append(Block(fence.group(1), start, "\n".join(body), note))
        i += 1
    return found


def commands(text):
    """Splits a block into commands, each with the answer the README shows for it."""
    result, pending = [], []
    for line in text.splitlines():
        if not pending and line.lstrip().startswith("#"):
            comment = line.strip()[1:].strip()
            if result and re.match(r'(\{|\.\.\.|")', comment):
                result[-1][1].append(comment)
            continue
        if not pending and not line.strip():
            continue
        pending.append(line)
        whole = "\n".join(pending)
        if line.endswith("\\"):
            continue
        if subprocess.run(["bash", "-n", "-c", whole], capture_output=True).returncode == 0:
            code, answer = split_comment(whole)
            result.append((code, [answer] if answer else []))
            pending = []
    if pending:
        sys.exit(f"README: a command never ends: {pending[0]}")
    return result


def split_comment(command):
    """The command without its trailing comment, and the answer that comment shows if any."""
    last = command.splitlines()[-1]
    quote, at = None, None
    for i, c in enumerate(last):
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and i > 0 and last[i - 1].isspace():
            at = i
            break
    if at is None:
        return command, None
    code = command[: len(command) - len(last)] + last[:at]
    comment = last[at + 1 :].strip()
    return code.rstrip(), comment if re.match(r"(\{|\.\.\.)", comment) else None


def shows(output, answer):
    """Whether `output` holds `answer`, where `...` in the answer stands for anything."""
    at = 0
    for piece in (p.strip() for p in answer.split("...")):
        found = output.find(piece, at)
        if found < 0:
            return False
        at = found + len(piece)
    return True


def serving_urls(command):
    """Where a serving command answers, or None when the command does not serve."""
    listen = re.search(r"--listen\s+(\S+)", command)
    if re.match(r"make run-cluster\b", command):
        return [f"http://127.0.0.1:{port}/healthz" for port in (8081, 8082, 8083)]
    if re.match(r"python3 -m http.server\b", command):
        port = command.split()[3]
        return [f"http://127.0.0.1:{port}/"]
    if re.match(r"(make run(-kafka|-hello)?|cargo run -- run|\S*eventhost run)\b", command):
        return [f"http://{listen.group(1) if listen else '127.0.0.1:8080'}/healthz"]
    return None


def answers_http(url):
    try:
        urllib.request.urlopen(url, timeout=2)
        return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


class Servers:
    """Commands serving in the background, each in a process group of its own."""

    def __init__(self, logs):
        self.logs, self.running = logs, []

    def start(self, command, cwd, env):
        log = self.logs / f"server-{len(list(self.logs.iterdir()))}.log"
        command = command.rstrip().rstrip("&").rstrip()
        print(f"    (serving) {command}", flush=True)
        for url in serving_urls(command):
            if answers_http(url):
                fail(f"something already answers at {url}, where `{command}` is to serve")
        process = subprocess.Popen(
            ["bash", "-c", command], cwd=cwd, env=env, start_new_session=True,
            stdout=open(log, "w"), stderr=subprocess.STDOUT,
        )
        self.running.append((command, process, log))
        deadline = time.monotonic() + SERVE_TIMEOUT
        for url in serving_urls(command):
            while not answers_http(url):
                if process.poll() is not None:
                    fail(f"`{command}` exited with {process.returncode}", log.read_text())
                if time.monotonic() > deadline:
                    fail(f"`{command}` did not answer at {url}", log.read_text())
                time.sleep(0.5)

    def loaded(self):
        return sum(log.read_text(errors="replace").count("plugin loaded") for _, _, log in self.running)

    def stop(self):
        for _, process, _ in self.running:
            try:
                os.killpg(process.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        for command, process, _ in self.running:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.running = []


class Shell:
    """One bash for a block, so its variables and `cd` carry from command to command."""

    MARK = "@@readme-test@@"

    def __init__(self, cwd, env):
        self.bash = subprocess.Popen(
            ["bash"], cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.bash.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def run(self, command):
        self.bash.stdin.write(f"{command}\nstatus=$?; echo; echo {self.MARK} $status\n")
        self.bash.stdin.flush()
        output = []
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.close()
                fail(f"`{command}` did not finish within {COMMAND_TIMEOUT} s", "".join(output))
            if line is None:
                fail(f"the shell running `{command}` exited", "".join(output))
            if line.startswith(self.MARK):
                return int(line.split()[1]), "".join(output)
            output.append(line)

    def cwd(self):
        return self.run("pwd")[1].strip()

    def close(self):
        try:
            os.killpg(self.bash.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.bash.wait()


def quoted(block, source):
    """Checks that the block's lines stand in `source` in the same order: the README quotes the
    file (it may leave parts out), so it cannot drift from it."""
    text = source.read_text().splitlines()
    at = 0
    for line in (l for l in block.text.splitlines() if l.strip()):
        while at < len(text) and text[at] != line:
            at += 1
        if at == len(text):
            fail(f"README line {block.line} quotes {source.name}, which has no line\n{line}\nthere")
        at += 1


def fail(message, output=""):
    print(f"\nREADME check failed: {message}\n{output[-4000:]}", file=sys.stderr)
    raise SystemExit(1)


def main():
    readme = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "README.md").resolve()
    work = Path(tempfile.mkdtemp(prefix="eventhost-readme-"))
    checkout, logs = work / "checkout", work / "logs"
    logs.mkdir()
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(checkout)], check=True)
    for shared in ("target", "plugins/target"):
        (ROOT / shared).mkdir(parents=True, exist_ok=True)
        (checkout / shared).symlink_to(ROOT / shared)
    env = dict(os.environ)
    servers = Servers(logs)
    # Stopped from outside (CI's time limit, Ctrl-C), the servers still go.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped by SIGTERM"))
    ran = skipped = quotes = 0
    try:
        for block in blocks(readme):
            note = block.note or ""
            if note.startswith("source "):
                print(f"README line {block.line}: the code of {note[7:]}", flush=True)
                quoted(block, checkout / note[7:])
                quotes += 1
                continue
            if block.lang != "sh":
                continue
            print(f"README line {block.line}:", flush=True)
            if note.startswith("skip"):
                print(f"    skipped: {note[4:].strip()}")
                skipped += 1
                continue
            steps = commands(block.text)
            if note.startswith("serving ") or any(serving_urls(c) for c, _ in steps):
                servers.stop()
            if note.startswith("serving "):
                servers.start(note[len("serving "):], checkout, env)
            shell = Shell(checkout, env)
            deployed = None
            for command, answer in steps:
                if deployed is not None:
                    deadline = time.monotonic() + DEPLOY_TIMEOUT
                    while servers.loaded() <= deployed:
                        if time.monotonic() > deadline:
                            fail("a plugin copied into the plugins folder was not loaded")
                        time.sleep(0.2)
                    deployed = None
                if serving_urls(command):
                    servers.start(command, shell.cwd(), env)
                    continue
                print(f"    $ {command}", flush=True)
                if re.match(r"cp \S+\.wasm \S*plugins/", command):
                    deployed = servers.loaded()
                reads = command.startswith("curl") and not re.search(r"\s-(X|d)\s", command)
                deadline = time.monotonic() + (ANSWER_TIMEOUT if reads else 0)
                expected = "".join(answer)
                while True:
                    status, output = shell.run(command)
                    if status != 0:
                        fail(f"`{command}` exited with {status}", output)
                    if shows(output, expected):
                        break
                    if time.monotonic() > deadline:
                        fail(f"`{command}` answered\n{output}\nwhere the README shows\n{expected}")
                    time.sleep(0.5)
            shell.close()
            ran += 1
    finally:
        servers.stop()
    shutil.rmtree(work, ignore_errors=True)
    print(f"\nREADME: {ran} blocks ran as written, {quotes} quoted as in their files, {skipped} skipped")


if __name__ == "__main__":
    main()
