#!/usr/bin/env python3
"""The fault matrix: runs the pipeline (`ebox worker …`, one process per stage) against the
real RabbitMQ and PostgreSQL of this machine, injects one fault per scenario, and asks an
oracle whether every message still ends as it must. Run it through scripts/faults.sh, which
builds the binary and sets the environment; docs/faults.md explains it.

Each scenario has a vhost (ebox-faults-<slug>) and a database (ebox_faults_<slug>) of its own,
made afresh and removed afterwards, two registered senders (broker users faults-a and faults-b),
consenting and non-consenting citizens, and a development SMTP server (`ebox smtp-sink`) whose
output is read back. The senders publish N messages, mixed: consenting citizens (their sender
must hear `published`, one document is published, one e-mail is sent), citizens who never
consented (`no-digital-user`, no document, no e-mail) and invalid ones (`rejected`).

The oracle reads what the senders heard on their status queues, the database (`messages`,
`documents`, `notifications`) and the e-mails the SMTP server received:

  lost        no final status heard (and the message is not stuck), or a `published` message
              whose document is not published or whose e-mail never arrived
  duplicated  two different final statuses for one reference, or more than one document,
              notification row or e-mail (same Message-ID) for it
  stuck       the message is still `accepted` in the database
  wrong       the final status is not the expected one (e.g. `failed` for a valid message), or
              the database's status differs from the one heard
  resent      statuses heard again (allowed by the sender contract: dedupe on id and status);
              information only

Nothing here prints a row it did not measure: a scenario whose fault could not be injected
says so (NOT INJECTED) and the run fails.
"""

from __future__ import annotations

import argparse
import base64
import collections
import hashlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pika

FINAL = ("published", "no-digital-user", "rejected", "failed")
WORKERS = ("intake", "consent-check", "store", "notify")
FAILPOINTS = ("driver.handle", "driver.after-commit", "driver.after-publish")
SENDERS = {"faults-a": "0406798006", "faults-b": "0876543270"}
MESSAGE_TYPE = "unemployment-certificate"
PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EBOX = os.environ.get("EBOX_BIN", os.path.join(REPO, "target", "release", "ebox"))
PG_ADMIN = os.environ.get("FAULTS_DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/postgres")
AMQP_HOST = os.environ.get("FAULTS_AMQP_HOST", "127.0.0.1")
AMQP_PORT = int(os.environ.get("FAULTS_AMQP_PORT", "5672"))
MGMT = os.environ.get("FAULTS_RABBITMQ_API", "http://127.0.0.1:15672/api")
MGMT_AUTH = ("guest", "guest")


def log(text: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


# --- citizens and messages ----------------------------------------------------------------


def ssin(yy: int, mm: int, dd: int, seq: int) -> str:
    """A valid Belgian national number born in the 1900s."""
    base = f"{yy:02d}{mm:02d}{dd:02d}{seq:03d}"
    return base + f"{97 - int(base) % 97:02d}"


CONSENTING = [ssin(70 + i, 1 + i % 12, 10 + i, 11 + 2 * i) for i in range(8)]
NOT_CONSENTING = [ssin(50 + i, 1 + i % 12, 5 + i, 41 + 2 * i) for i in range(8)]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def v2_body(recipient: str, ref: str, pdf: bytes, digest: bytes | None = None, message_type: str = MESSAGE_TYPE) -> bytes:
    return json.dumps({
        "recipient": {"eboxType": "citizen", "eboxIdValue": recipient},
        "subject": {"nl": f"Attest {ref}", "fr": f"Attestation {ref}", "de": f"Bescheinigung {ref}"},
        "messageTypeId": message_type,
        "attachments": [{
            "fileName": "attest.pdf",
            "mediaType": "application/pdf",
            "mainContent": True,
            "content": base64.b64encode(pdf).decode(),
            "digest": {"digestMethod": "sha_256", "digestValue": b64url(digest or hashlib.sha256(pdf).digest())},
        }],
        "bodyMainContent": False,
        "replyAuthorized": False,
    }).encode()


def v1_body(recipient: str, ref: str) -> bytes:
    return json.dumps({
        "ssin": recipient,
        "messageTypeId": MESSAGE_TYPE,
        "subject": {"nl": f"Attest {ref}", "fr": f"Attestation {ref}"},
        "document": {"fileName": "attest.pdf", "mediaType": "application/pdf",
                     "content": base64.b64encode(PDF).decode()},
        "retentionDays": 60,
    }).encode()


class Message:
    __slots__ = ("ref", "sender", "kind", "body", "expected")

    def __init__(self, ref, sender, kind, body, expected):
        self.ref, self.sender, self.kind, self.body, self.expected = ref, sender, kind, body, expected


def make_messages(slug: str, n: int, rng: random.Random, big_bytes: int = 0) -> list[Message]:
    """n messages, half consenting, 30 % not consenting, 20 % invalid; alternately from each
    sender. With big_bytes, every message is a consenting one with an attachment that size."""
    out = []
    senders = list(SENDERS)
    v2, v1 = "ebox.publish.v2", "ebox.publish.v1"
    big_pdf = None
    if big_bytes:
        big_pdf = b"%PDF-1.4\n" + rng.randbytes(big_bytes - 9)
    for i in range(n):
        ref = f"{slug}-{i:05d}"
        sender = senders[i % 2]
        if big_pdf is not None:
            out.append(Message(ref, sender, v2, v2_body(CONSENTING[i % 8], ref, big_pdf), "published"))
            continue
        roll = i % 10
        if roll < 5:
            citizen = CONSENTING[i % 8]
            if roll == 4:
                out.append(Message(ref, sender, v1, v1_body(citizen, ref), "published"))
            else:
                out.append(Message(ref, sender, v2, v2_body(citizen, ref, PDF), "published"))
        elif roll < 8:
            out.append(Message(ref, sender, v2, v2_body(NOT_CONSENTING[i % 8], ref, PDF), "no-digital-user"))
        else:
            # Invalid, four ways: wrong check digits, a digest that does not match, an unknown
            # message type, a body that is not JSON.
            how = (i // 10) % 4
            citizen = CONSENTING[i % 8]
            if how == 0:
                bad = citizen[:9] + f"{(int(citizen[9:]) + 1) % 100:02d}"
                body = v2_body(bad, ref, PDF)
            elif how == 1:
                body = v2_body(citizen, ref, PDF, digest=hashlib.sha256(b"other").digest())
            elif how == 2:
                body = v2_body(citizen, ref, PDF, message_type="no-such-type")
            else:
                body = b"{not json"
            out.append(Message(ref, sender, v2, body, "rejected"))
    return out


# --- infrastructure -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(url: str, sql: str) -> list[list[str]]:
    out = subprocess.run(["psql", url, "-qAtX", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
                         check=True, capture_output=True, text=True).stdout
    return [line.split("\t") for line in out.splitlines() if line]


def db_url(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + "/" + name


def mgmt(method: str, path: str, body=None) -> bytes:
    request = urllib.request.Request(MGMT + path, method=method,
                                     data=None if body is None else json.dumps(body).encode())
    token = base64.b64encode(f"{MGMT_AUTH[0]}:{MGMT_AUTH[1]}".encode()).decode()
    request.add_header("Authorization", f"Basic {token}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


def wait_for_management(timeout: float = 120) -> None:
    """The management API answers again (it starts last when the broker restarts)."""
    deadline = time.time() + timeout
    while True:
        try:
            mgmt("GET", "/overview")
            return
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(0.5)


def rabbitmqctl(*args: str, node: str | None = None, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    command = ([] if os.geteuid() == 0 else ["sudo"]) + ["rabbitmqctl", "-q"]
    command += (["-n", node] if node else []) + list(args)
    return subprocess.run(command, check=check, capture_output=True, text=True, timeout=timeout)


def vm_hwm_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def policy_commands(vhost: str) -> list[list[str]]:
    """The service's broker policies for `vhost` (dead-lettering, the delivery limit, the
    queues' bounds), as the arguments of the `rabbitmqctl` commands `ebox broker policies`
    prints: the one table every environment applies (queues/src/policies.rs)."""
    out = subprocess.run([EBOX, "broker", "policies", "--vhost", vhost],
                         check=True, capture_output=True, text=True, timeout=60).stdout
    return [shlex.split(line)[1:] for line in out.splitlines() if line.startswith("rabbitmqctl ")]


def sweep_leftovers() -> None:
    """Removes what an interrupted earlier run left: vhosts, databases."""
    for (name,) in psql(PG_ADMIN, "SELECT datname FROM pg_database WHERE datname LIKE 'ebox\\_faults\\_%'"):
        psql(PG_ADMIN, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    try:
        for vhost in json.loads(mgmt("GET", "/vhosts?columns=name")):
            if vhost["name"].startswith("ebox-faults-"):
                mgmt("DELETE", "/vhosts/" + urllib.parse.quote(vhost["name"], safe=""))
    except urllib.error.URLError as e:
        log(f"cannot sweep vhosts: {e}")


class MainBroker:
    """This machine's RabbitMQ (5672), managed through its management API."""

    port = AMQP_PORT
    name = "rabbit@localhost"

    def create_vhost(self, vhost: str) -> None:
        quoted = urllib.parse.quote(vhost, safe="")
        try:
            mgmt("DELETE", f"/vhosts/{quoted}")
        except urllib.error.HTTPError:
            pass
        mgmt("PUT", f"/vhosts/{quoted}", {})
        mgmt("PUT", f"/permissions/{quoted}/guest", {"configure": ".*", "write": ".*", "read": ".*"})
        for sender in SENDERS:
            mgmt("PUT", f"/permissions/{quoted}/{sender}",
                 {"configure": "^$", "write": "^ebox\\.publish$", "read": f"^ebox\\.status\\.{re.escape(sender)}$"})
        for command in policy_commands(vhost):
            rabbitmqctl(*command)

    def delete_vhost(self, vhost: str) -> None:
        mgmt("DELETE", "/vhosts/" + urllib.parse.quote(vhost, safe=""))

    def close(self) -> None:
        pass


class Proxy(threading.Thread):
    """A local TCP proxy standing in for a Kubernetes Service in front of the cluster: each new
    connection goes to the first node, in order, that accepts it; when either side closes,
    both do."""

    def __init__(self, upstreams: list[int]):
        super().__init__(daemon=True, name="proxy")
        self.upstreams = upstreams
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(256)
        self.port = self.listener.getsockname()[1]
        self.closed = False

    def run(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(client,), daemon=True).start()

    def serve(self, client: socket.socket) -> None:
        upstream = None
        for port in self.upstreams:
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=2)
                upstream.settimeout(None)
                break
            except OSError:
                upstream = None
        if upstream is None:
            client.close()
            return

        def pipe(source: socket.socket, sink: socket.socket) -> None:
            try:
                while True:
                    data = source.recv(65536)
                    if not data:
                        break
                    sink.sendall(data)
            except OSError:
                pass
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        other = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
        other.start()
        pipe(client, upstream)
        other.join()
        client.close()
        upstream.close()

    def close(self) -> None:
        self.closed = True
        self.listener.close()


class Cluster:
    """Three RabbitMQ nodes of this machine's installation clustered together, each on its own
    ports and data directory (the machine's own node, rabbit@localhost, is left alone), behind
    a local TCP proxy. See ../shared/reference/rabbitmq-cluster-facts.md."""

    BASE = "/var/lib/rabbitmq/ebox-faults-cluster"
    SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"

    def __init__(self):
        self.nodes = [f"ebox-faults-{i}@localhost" for i in (1, 2, 3)]
        self.amqp_ports = [free_port() for _ in self.nodes]
        self.dist_ports = [free_port() for _ in self.nodes]
        self.pids: dict[str, int] = {}
        self.procs: list[subprocess.Popen] = []
        self.proxy: Proxy | None = None

    def start(self) -> None:
        shutil.rmtree(self.BASE, ignore_errors=True)
        for i, node in enumerate(self.nodes):
            self.start_node(i)
        for node in self.nodes:
            # await_startup fails at once while the node has not registered yet.
            deadline = time.time() + 180
            while rabbitmqctl("await_startup", node=node, check=False, timeout=180).returncode != 0:
                if time.time() > deadline:
                    raise RuntimeError(f"{node} did not start (see {self.BASE})")
                time.sleep(1)
            self.pids[node] = int(self.ctl(node, "eval", "list_to_integer(os:getpid()).").strip())
        for node in self.nodes[1:]:
            self.ctl(node, "stop_app")
            self.ctl(node, "join_cluster", self.nodes[0])
            self.ctl(node, "start_app")
        running = self.ctl(self.nodes[0], "eval", "length(rabbit_nodes:all_running()).").strip()
        if running != "3":
            raise RuntimeError(f"the cluster has {running} running nodes, not 3")
        for sender in SENDERS:
            self.ctl(self.nodes[0], "add_user", sender, sender)
        self.proxy = Proxy(self.amqp_ports)
        self.proxy.start()
        self.port = self.proxy.port
        self.name = self.nodes[0]

    def start_node(self, i: int) -> None:
        node, home = self.nodes[i], os.path.join(self.BASE, f"node{i + 1}")
        os.makedirs(os.path.join(home, "mnesia"), exist_ok=True)
        os.makedirs(os.path.join(home, "log"), exist_ok=True)
        with open(os.path.join(home, "rabbitmq.conf"), "w") as f:
            f.write(f"listeners.tcp.default = 127.0.0.1:{self.amqp_ports[i]}\n"
                    "loopback_users = none\n")
        with open(os.path.join(home, "enabled_plugins"), "w") as f:
            f.write("[].\n")
        settings = {
            "NODENAME": node,
            "NODE_PORT": str(self.amqp_ports[i]),
            "DIST_PORT": str(self.dist_ports[i]),
            "MNESIA_BASE": os.path.join(home, "mnesia"),
            "LOG_BASE": os.path.join(home, "log"),
            "CONFIG_FILE": os.path.join(home, "rabbitmq.conf"),
            "ENABLED_PLUGINS_FILE": os.path.join(home, "enabled_plugins"),
            "PID_FILE": os.path.join(home, "pid"),
        }
        env_file = os.path.join(home, "rabbitmq-env.conf")
        with open(env_file, "w") as f:
            f.write("ERL_EPMD_ADDRESS=127.0.0.1\n")
            f.writelines(f"{key}={value}\n" for key, value in settings.items())
        subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", self.BASE], check=True)
        env = {"HOME": "/var/lib/rabbitmq", "PATH": os.environ["PATH"], "RABBITMQ_CONF_ENV_FILE": env_file,
               **{f"RABBITMQ_{key}": value for key, value in settings.items()}}
        out = open(os.path.join(home, "server.out"), "ab")
        self.procs.append(subprocess.Popen(
            ["runuser", "-u", "rabbitmq", "--", "env", *(f"{k}={v}" for k, v in env.items()), self.SERVER],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd="/var/lib/rabbitmq"))
        out.close()

    def ctl(self, node: str, *args: str, timeout: float = 120) -> str:
        return rabbitmqctl(*args, node=node, timeout=timeout).stdout

    def create_vhost(self, vhost: str) -> None:
        first = self.nodes[0]
        self.ctl(first, "add_vhost", vhost)
        self.ctl(first, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        for sender in SENDERS:
            self.ctl(first, "set_permissions", "-p", vhost, sender, "^$", "^ebox\\.publish$",
                     f"^ebox\\.status\\.{re.escape(sender)}$")
        for command in policy_commands(vhost):
            self.ctl(first, *command)

    def delete_vhost(self, vhost: str) -> None:
        for node in self.nodes:
            if self.alive(node):
                self.ctl(node, "delete_vhost", vhost)
                return

    def alive(self, node: str) -> bool:
        try:
            os.kill(self.pids[node], 0)
            return True
        except OSError:
            return False

    def leaders(self, vhost: str) -> collections.Counter:
        """Which node leads how many of the vhost's quorum queues."""
        for node in self.nodes:
            if self.alive(node):
                out = self.ctl(node, "list_queues", "-p", vhost, "--no-table-headers", "name", "type", "leader")
                return collections.Counter(line.split("\t")[2] for line in out.splitlines()
                                           if line.count("\t") == 2 and line.split("\t")[1] == "quorum")
        return collections.Counter()

    def kill(self, node: str) -> None:
        os.kill(self.pids[node], signal.SIGKILL)

    def close(self) -> None:
        """Kills the three nodes (the processes this harness started, by pid and process
        group) and removes their data."""
        if self.proxy is not None:
            self.proxy.close()
        for pid in self.pids.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(self.BASE, ignore_errors=True)


# --- the processes of a run ---------------------------------------------------------------


class Worker:
    def __init__(self, run: "Run", name: str):
        self.run, self.name = run, name
        self.proc: subprocess.Popen | None = None
        self.port = free_port()
        self.failpoint: str | None = None  # armed for the next start only
        self.armed = False
        self.expect_exit = False  # a planned stop: the supervisor does not restart it
        self.fired_at: float | None = None
        self.restarted_at: float | None = None
        self.peak_kib = 0
        self.exits: list[str] = []  # unplanned exits, for the notes
        self.starts = 0

    def start(self, failpoint: str | None = None) -> None:
        env = dict(self.run.env, EBOX_METRICS_ADDR=f"127.0.0.1:{self.port}")
        env.pop("EBOX_FAILPOINT", None)
        if failpoint:
            env["EBOX_FAILPOINT"] = failpoint
        self.armed = bool(failpoint)
        self.failpoint = failpoint
        self.expect_exit = False
        out = open(os.path.join(self.run.dir, f"{self.name}.log"), "ab")
        out.write(f"--- start {self.starts} failpoint={failpoint}\n".encode())
        out.flush()
        self.proc = subprocess.Popen([EBOX, "worker", self.name], env=env, stdout=out, stderr=out,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2) as r:
                return r.status == 200
        except Exception:
            return False

    def sample(self) -> None:
        if self.alive():
            kib = vm_hwm_kib(self.proc.pid)
            if kib:
                self.peak_kib = max(self.peak_kib, kib)

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, sig)

    def stop(self, timeout: float = 20, signalled: bool = False) -> int | None:
        """SIGTERM (unless already sent), then SIGKILL after timeout; the exit code."""
        if self.proc is None:
            return None
        self.expect_exit = True
        if self.alive():
            self.sample()
            # A process signalled before it installed its handler dies of the signal: let a
            # freshly restarted one come up first.
            deadline = time.time() + 10
            while not signalled and not self.ready() and self.alive() and time.time() < deadline:
                time.sleep(0.1)
            if not signalled:
                self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.exits.append(f"{self.name} did not stop within {timeout:.0f}s of SIGTERM: killed")
                self.signal(signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


class StatusReader(threading.Thread):
    """A sender reading its status queue, as a sender would: reconnects whenever the broker
    goes away, and consumes again once the queue exists again."""

    def __init__(self, run: "Run", sender: str):
        super().__init__(daemon=True, name=f"statuses-{sender}")
        self.owner, self.sender = run, sender
        self.stop_flag = threading.Event()

    def run(self) -> None:  # noqa: D401 (thread body)
        queue = f"ebox.status.{self.sender}"
        while not self.stop_flag.is_set():
            connection = None
            try:
                connection = pika.BlockingConnection(self.owner.sender_params(self.sender))
                channel = connection.channel()
                channel.basic_qos(prefetch_count=200)
                for method, _props, body in channel.consume(queue, inactivity_timeout=0.3):
                    if self.stop_flag.is_set():
                        break
                    if method is None:
                        continue
                    self.owner.record_status(self.sender, body)
                    channel.basic_ack(method.delivery_tag)
            except Exception:  # the broker went away, or the queue is gone: try again
                time.sleep(0.5)
            finally:
                try:
                    if connection is not None and connection.is_open:
                        connection.close()
                except Exception:
                    pass


class Publisher(threading.Thread):
    """A sender publishing its messages with confirms; what was not confirmed (the broker went
    away) is published again: same reference, same body, which the contract makes idempotent."""

    def __init__(self, run: "Run", sender: str, messages: list[Message], name: str, seconds: float):
        super().__init__(daemon=True, name=name)
        self.owner, self.sender, self.messages = run, sender, messages
        # Spread over `seconds`, so that the faults land while senders publish and the stages
        # work, not after a backlog was drained.
        self.interval = seconds / max(1, len(messages))
        self.published = 0
        self.retries = 0

    def run(self) -> None:  # noqa: D401
        connection = channel = None
        i = 0
        started = time.time()
        while i < len(self.messages) and not self.owner.stopping:
            message = self.messages[i]
            delay = started + i * self.interval - time.time()
            if delay > 0:
                time.sleep(delay)
            try:
                if channel is None:
                    connection = pika.BlockingConnection(self.owner.sender_params(self.sender))
                    channel = connection.channel()
                    channel.confirm_delivery()
                channel.basic_publish(
                    "ebox.publish", "message", message.body,
                    pika.BasicProperties(message_id=message.ref, type=message.kind, user_id=self.sender,
                                         content_type="application/json", delivery_mode=2),
                    mandatory=True)
                i += 1
                self.published += 1
            except Exception:
                self.retries += 1
                try:
                    if connection is not None and connection.is_open:
                        connection.close()
                except Exception:
                    pass
                connection = channel = None
                time.sleep(0.5)
        try:
            if connection is not None and connection.is_open:
                connection.close()
        except Exception:
            pass


# --- one scenario's run -------------------------------------------------------------------


class Run:
    def __init__(self, ctx: "Context", slug: str, title: str, n: int, big_bytes: int = 0, broker=None):
        self.ctx, self.slug, self.title, self.n = ctx, slug, title, n
        self.broker = broker or MainBroker()
        self.amqp_port = self.broker.port
        self.vhost = f"ebox-faults-{slug}"
        self.db = "ebox_faults_" + slug.replace("-", "_")
        self.dir = os.path.join(ctx.dir, slug)
        os.makedirs(self.dir, exist_ok=True)
        self.rng = random.Random(slug)
        self.messages = make_messages(slug, n, self.rng, big_bytes)
        self.by_ref = {m.ref: m for m in self.messages}
        self.lock = threading.Lock()
        self.heard: dict[str, list[str]] = collections.defaultdict(list)
        self.final_heard: set[str] = set()
        self.unknown_statuses = 0
        self.stopping = False
        self.smtp_port = free_port()
        self.smtp: subprocess.Popen | None = None
        self.smtp_out = os.path.join(self.dir, "smtp.out")
        self.workers = {name: Worker(self, name) for name in WORKERS}
        self.readers: dict[str, StatusReader] = {}
        self.publishers: list[Publisher] = []
        self.notes: list[str] = []
        self.injected = False
        self.fault_cleared: float | None = None
        self.at_fault: list[float] = []  # progress when each fault struck
        self.supervise = True
        self.supervising = threading.Lock()  # held while the monitor restarts a worker
        self.monitor = threading.Thread(target=self._monitor, daemon=True, name="monitor")
        self.amqp_url = f"amqp://guest:guest@{AMQP_HOST}:{self.amqp_port}/" + urllib.parse.quote(self.vhost, safe="")
        self.env = dict(
            os.environ,
            EBOX_AMQP_URL=self.amqp_url,
            EBOX_DATABASE_URL=db_url(self.db),
            EBOX_SSIN_HASH_KEY="faults-only-secret-never-use-it-in-production",
            EBOX_PROOF_SIGNING_KEY_FILE=os.path.join(REPO, "tests", "fixtures", "proof-ed25519.pem"),
            EBOX_LOG=os.environ.get("EBOX_LOG", "warn"),
            EBOX_LOG_FORMAT="text",
            EBOX_SMTP_URL=f"smtp://127.0.0.1:{self.smtp_port}",
        )

    # - setup and teardown -

    def ebox(self, *args: str) -> None:
        subprocess.run([EBOX, *args], env=self.env, check=True, capture_output=True, timeout=120)

    def prepare(self) -> None:
        psql(PG_ADMIN, f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        psql(PG_ADMIN, f'CREATE DATABASE "{self.db}"')
        self.broker.create_vhost(self.vhost)
        registry = os.path.join(self.dir, "registry.yaml")
        with open(registry, "w") as f:
            f.write("senders:\n")
            for sender, cbe in SENDERS.items():
                f.write(f"  - id: {sender}\n    organizationId: \"{cbe}\"\n"
                        "    name: {nl: Fouten, fr: Pannes, de: Fehler}\n"
                        "    applications: [{id: unemployment, name: {nl: Werkloosheid, fr: Chômage, de: Arbeitslosigkeit}}]\n"
                        f"    messageTypes: [{MESSAGE_TYPE}]\n")
            f.write(f"messageTypes:\n  - id: {MESSAGE_TYPE}\n    name: {{nl: Attest, fr: Attestation, de: Bescheinigung}}\n"
                    "    validityPeriod: {validityPeriodNumber: 1, validityPeriodUnit: year}\n")
        self.registry = registry
        self.ebox("migrate")
        self.ebox("registry", "load", registry)
        for i, citizen in enumerate(CONSENTING):
            self.ebox("consent", "grant", citizen)
            self.ebox("citizen", "set", citizen, "--language", "fr", "--channel", "email",
                      "--email", f"citizen{i}@example.be")
        self.start_smtp()
        self.monitor.start()

    def start_smtp(self) -> None:
        out = open(self.smtp_out, "ab")
        self.smtp = subprocess.Popen([EBOX, "smtp-sink", "--listen", f"127.0.0.1:{self.smtp_port}"],
                                     stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        out.close()
        deadline = time.time() + 10
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.smtp_port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("the SMTP sink did not listen")

    def stop_smtp(self) -> None:
        if self.smtp and self.smtp.poll() is None:
            self.smtp.kill()
            self.smtp.wait()

    def start_workers(self, names=WORKERS, failpoints: dict | None = None, wait_ready: bool = True) -> None:
        for name in names:
            self.workers[name].start((failpoints or {}).get(name))
        if wait_ready:
            self.wait_ready(names)

    def wait_ready(self, names=WORKERS, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        for name in names:
            worker = self.workers[name]
            while not worker.ready():
                if not worker.alive() and not worker.armed:
                    raise RuntimeError(f"worker {name} exited at start (see {self.dir}/{name}.log)")
                if time.time() > deadline:
                    raise RuntimeError(f"worker {name} not ready within {timeout}s (see {self.dir}/{name}.log)")
                time.sleep(0.1)

    def start_readers(self, senders=SENDERS) -> None:
        for sender in senders:
            reader = StatusReader(self, sender)
            self.readers[sender] = reader
            reader.start()

    def publish(self, senders=SENDERS, copies: int = 1) -> None:
        """Starts one publisher per sender and copy; each copy publishes every message of its
        sender, in its own order."""
        for sender in senders:
            mine = [m for m in self.messages if m.sender == sender]
            for copy in range(copies):
                order = list(mine)
                if copy:
                    random.Random(f"{self.slug}-{sender}-{copy}").shuffle(order)
                publisher = Publisher(self, sender, order, f"publish-{sender}-{copy}",
                                      self.ctx.publish_seconds)
                self.publishers.append(publisher)
                publisher.start()

    def sender_params(self, sender: str) -> pika.ConnectionParameters:
        return pika.ConnectionParameters(
            host=AMQP_HOST, port=self.amqp_port, virtual_host=self.vhost,
            credentials=pika.PlainCredentials(sender, sender), heartbeat=30,
            blocked_connection_timeout=60, connection_attempts=1, socket_timeout=5)

    def teardown(self) -> None:
        with self.supervising:
            self.supervise = False
        self.stopping = True
        self.monitor.join(5) if self.monitor.is_alive() else None
        for worker in self.workers.values():
            code = worker.stop()
            if code not in (None, 0):
                self.notes.append(f"{worker.name} exited {code} on SIGTERM at the end")
        for reader in self.readers.values():
            reader.stop_flag.set()
        for reader in self.readers.values():
            reader.join(5)
        self.stop_smtp()
        try:
            self.broker.delete_vhost(self.vhost)
        except Exception as e:
            log(f"could not delete vhost {self.vhost}: {e}")
        if not self.ctx.keep:
            psql(PG_ADMIN, f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')

    # - observation -

    def record_status(self, sender: str, body: bytes) -> None:
        try:
            event = json.loads(body)
            ref, status = event.get("senderReference"), event.get("status")
        except ValueError:
            ref = status = None
        with self.lock:
            if ref is None or ref not in self.by_ref:
                self.unknown_statuses += 1
                return
            self.heard[ref].append(status)
            if status in FINAL:
                self.final_heard.add(ref)

    def struck(self) -> None:
        """A fault strikes now: remember how far the run was."""
        self.at_fault.append(self.progress())

    def progress(self) -> float:
        with self.lock:
            return len(self.final_heard) / max(1, self.n)

    def wait_progress(self, fraction: float, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while self.progress() < fraction:
            if time.time() > deadline:
                raise RuntimeError(f"progress stayed at {self.progress():.0%} (wanted {fraction:.0%})")
            time.sleep(0.05)

    def _monitor(self) -> None:
        while not self.stopping:
            for worker in self.workers.values():
                worker.sample()
                if worker.proc is None or worker.alive() or worker.expect_exit or not self.supervise:
                    continue
                code = worker.proc.returncode
                now = time.time()
                if worker.armed and code == -signal.SIGABRT:
                    worker.fired_at = now
                    self.struck()
                    log(f"{worker.name}: failpoint {worker.failpoint} fired (SIGABRT); restarting it")
                else:
                    worker.exits.append(f"{worker.name} exited unexpectedly ({code}); restarted")
                    log(worker.exits[-1])
                time.sleep(0.5)  # the orchestrator's restart delay
                with self.supervising:
                    if not self.supervise:
                        continue
                    worker.start()
                    worker.restarted_at = time.time()
            time.sleep(0.1)

    def emails(self) -> collections.Counter:
        keys = collections.Counter()
        try:
            with open(self.smtp_out, errors="replace") as f:
                for line in f:
                    m = re.match(r"(?i)^message-id:\s*<([0-9a-f-]+)@ebox\.notification>", line.strip())
                    if m:
                        keys[m.group(1)] += 1
        except FileNotFoundError:
            pass
        return keys

    def oracle(self) -> dict:
        url = db_url(self.db)
        rows = psql(url, """
            SELECT m.sender_reference, m.status,
                   (SELECT count(*) FROM documents d WHERE d.message_id = m.id),
                   (SELECT count(*) FROM documents d WHERE d.message_id = m.id AND d.published),
                   (SELECT count(*) FROM notifications n WHERE n.message_id = m.id),
                   coalesce((SELECT string_agg(n.idempotency_key::text, ',') FROM notifications n
                             WHERE n.message_id = m.id), '')
            FROM messages m""")
        extra_docs = psql(url, "SELECT sender_reference, count(*) FROM documents GROUP BY 1 HAVING count(*) > 1")
        emails = self.emails()
        db = {r[0]: r for r in rows}
        counts = dict(lost=0, duplicated=0, stuck=0, wrong=0, resent=0)
        examples = collections.defaultdict(list)
        with self.lock:
            heard = {ref: list(statuses) for ref, statuses in self.heard.items()}

        def flag(kind: str, ref: str, why: str) -> None:
            counts[kind] += 1
            if len(examples[kind]) < 3:
                examples[kind].append(f"{ref}: {why}")

        for message in self.messages:
            ref = message.ref
            statuses = heard.get(ref, [])
            counts["resent"] += len(statuses) - len(set(statuses))
            finals = sorted({s for s in statuses if s in FINAL})
            row = db.get(ref)
            db_status = row[1] if row else None
            docs, published_docs, notes_rows = (int(row[2]), int(row[3]), int(row[4])) if row else (0, 0, 0)
            keys = [k for k in (row[5].split(",") if row and row[5] else [])]
            mails = sum(emails.get(k, 0) for k in keys)
            if db_status == "accepted":
                flag("stuck", ref, f"still accepted; heard {statuses}")
                continue
            if len(finals) > 1 or docs > 1 or notes_rows > 1 or mails > 1:
                flag("duplicated", ref, f"finals {finals}, documents {docs}, notification rows {notes_rows}, e-mails {mails}")
                continue
            if not finals:
                flag("lost", ref, f"no final status heard (heard {statuses}; database: {db_status})")
                continue
            final = finals[0]
            if final != message.expected or (db_status is not None and db_status not in (final, "read", "expired")):
                flag("wrong", ref, f"heard {final}, expected {message.expected}, database {db_status}")
                continue
            if final == "published" and (published_docs != 1 or mails != 1):
                flag("lost", ref, f"published but documents published {published_docs}, e-mails {mails}")
                continue
            if final != "published" and (docs or notes_rows or mails):
                flag("wrong", ref, f"{final} yet documents {docs}, notifications {notes_rows}, e-mails {mails}")
        for ref, count in extra_docs:
            flag("duplicated", ref, f"{count} documents")
        counts["examples"] = {k: v for k, v in examples.items()}
        return counts

    def settled(self) -> bool:
        """Every reference heard its final status, and the oracle finds nothing missing."""
        if self.progress() < 1:
            return False
        result = self.oracle()
        return result["lost"] == 0 and result["stuck"] == 0

    def converge(self, timeout: float) -> float | None:
        """Waits until settled; the seconds since the fault was cleared, or None (timed out)."""
        start = self.fault_cleared or time.time()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.progress() >= 1 and self.settled():
                return max(0.0, time.time() - start)
            time.sleep(0.5)
        return None

    def peak(self) -> tuple[int, str]:
        worker = max(self.workers.values(), key=lambda w: w.peak_kib)
        return worker.peak_kib, worker.name


# --- scenarios ----------------------------------------------------------------------------


class NotInjected(Exception):
    pass


def expected_deliveries(run: Run, worker: str) -> int:
    valid = sum(m.expected != "rejected" for m in run.messages)
    published = sum(m.expected == "published" for m in run.messages)
    return {"intake": run.n, "consent-check": valid, "store": published, "notify": published}[worker]


def scenario_baseline(run: Run, quick: bool) -> None:
    run.start_workers()
    run.start_readers()
    run.struck()
    run.fault_cleared = time.time()
    run.injected = True
    run.publish()


def scenario_failpoint(workers: tuple[str, ...], failpoint: str):
    def scenario(run: Run, quick: bool) -> None:
        armed = {}
        for worker in workers:
            if failpoint == "driver.handle":
                n = max(2, expected_deliveries(run, worker) // 3)
            else:
                n = 5
            armed[worker] = f"{failpoint}:{n}"
        run.start_workers(failpoints=armed)
        run.start_readers()
        run.publish()
        # Wait for every armed worker to abort and be restarted; a failpoint that has not fired
        # 15 s after the senders heard every final status never will.
        deadline = time.time() + 120
        done_at = None
        while time.time() < deadline:
            if all(run.workers[w].restarted_at for w in workers):
                break
            if done_at is None and run.progress() >= 1:
                done_at = time.time()
            if done_at and time.time() - done_at > 15:
                break
            time.sleep(0.1)
        missing = [w for w in workers if not run.workers[w].restarted_at]
        if missing:
            raise NotInjected(f"failpoint {failpoint} never fired in {', '.join(missing)}")
        run.injected = True
        run.fault_cleared = max(run.workers[w].restarted_at for w in workers)
    return scenario


def scenario_kill9(names: tuple[str, ...]):
    def scenario(run: Run, quick: bool) -> None:
        kill9(run, [run.workers[name] for name in names])
    return scenario


def kill9(run: Run, victims: list) -> None:
    run.start_workers()
    run.start_readers()
    run.publish()
    run.wait_progress(0.4)
    log("kill -9 of " + ", ".join(w.name for w in victims))
    run.struck()
    for worker in victims:
        worker.expect_exit = True
        worker.signal(signal.SIGKILL)
    for worker in victims:
        worker.proc.wait()
        if worker.proc.returncode != -signal.SIGKILL:
            raise NotInjected(f"{worker.name} ended {worker.proc.returncode}, not by SIGKILL")
    run.injected = True
    time.sleep(1)
    run.start_workers([w.name for w in victims], wait_ready=False)
    run.fault_cleared = time.time()


def scenario_broker(run: Run, quick: bool) -> None:
    run.start_workers()
    run.start_readers()
    run.publish()
    run.wait_progress(0.3)
    log("rabbitmqctl stop_app")
    run.struck()
    rabbitmqctl("stop_app")
    run.injected = True
    time.sleep(3 if quick else 5)
    log("rabbitmqctl start_app")
    starting = subprocess.Popen((["rabbitmqctl"] if os.geteuid() == 0 else ["sudo", "rabbitmqctl"]) + ["-q", "start_app"])
    # The fault ends when the broker takes connections again (start_app returns later, once
    # every plugin has started).
    while True:
        with socket.socket() as s:
            if s.connect_ex((AMQP_HOST, AMQP_PORT)) == 0:
                break
        if starting.poll() not in (None, 0):
            raise RuntimeError("rabbitmqctl start_app failed")
        time.sleep(0.05)
    run.fault_cleared = time.time()
    starting.wait(120)
    wait_for_management()


def scenario_postgres(run: Run, quick: bool) -> None:
    run.start_workers()
    run.start_readers()
    run.publish()
    killed = 0
    for fraction in (0.25, 0.5, 0.75):
        run.wait_progress(fraction)
        rows = psql(PG_ADMIN, f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                              f"WHERE datname = '{run.db}' AND pid <> pg_backend_pid()")
        killed += int(rows[0][0])
        run.struck()
        log(f"terminated {rows[0][0]} PostgreSQL connections at {fraction:.0%}")
        run.fault_cleared = time.time()
    if killed == 0:
        raise NotInjected("no connection to terminate")
    run.injected = True
    run.notes.append(f"{killed} connections terminated in 3 rounds")


def scenario_sigterm(run: Run, quick: bool) -> None:
    run.start_workers()
    run.start_readers()
    run.publish()
    run.wait_progress(0.3)
    log("SIGTERM to every worker")
    run.struck()
    started = time.time()
    for worker in run.workers.values():
        worker.expect_exit = True
        worker.signal(signal.SIGTERM)
    for worker in run.workers.values():
        code = worker.stop(timeout=30, signalled=True)
        if code != 0:
            run.notes.append(f"{worker.name} exited {code} on SIGTERM")
    run.notes.append(f"all stopped within {time.time() - started:.1f}s")
    run.injected = True
    run.start_workers(wait_ready=False)
    run.fault_cleared = time.time()


def scenario_duplicates(run: Run, quick: bool) -> None:
    run.start_workers()
    run.start_readers()
    run.struck()
    run.fault_cleared = time.time()
    run.injected = True
    run.publish(copies=3)


def scenario_status_queue(run: Run, quick: bool) -> None:
    """faults-b's status queue is deleted while faults-a's traffic flows; faults-b then
    publishes (its statuses can go nowhere: they are parked), and `ebox registry load` declares
    the queue again. faults-b publishes only after the deletion, so no status sits in the queue
    when it goes (that would be the sender's loss, not the pipeline's)."""
    run.start_workers()
    run.start_readers(["faults-a"])
    run.publish(["faults-a"])
    half_a = sum(m.sender == "faults-a" for m in run.messages) / run.n
    run.wait_progress(half_a * 0.2)
    connection = pika.BlockingConnection(pika.URLParameters(run.amqp_url))
    frame = connection.channel().queue_delete("ebox.status.faults-b")
    connection.close()
    if frame.method.message_count:
        raise NotInjected(f"the queue held {frame.method.message_count} statuses")
    log("deleted ebox.status.faults-b; faults-b publishes")
    run.struck()
    run.injected = True
    run.publish(["faults-b"])
    deadline = time.time() + 120
    parked = 0
    while time.time() < deadline:
        parked = int(psql(db_url(run.db), "SELECT count(*) FROM parked_publishes")[0][0])
        if parked >= max(5, sum(m.sender == "faults-b" for m in run.messages) // 4):
            break
        time.sleep(0.2)
    if parked == 0:
        raise NotInjected("nothing was parked")
    run.notes.append(f"{parked} statuses parked before `ebox registry load`")
    run.ebox("registry", "load", run.registry)
    log("ebox registry load: faults-b's status queue is back")
    run.start_readers(["faults-b"])
    run.fault_cleared = time.time()


def scenario_smtp(run: Run, quick: bool) -> None:
    run.start_workers()
    run.start_readers()
    run.publish()
    run.wait_progress(0.2)
    run.stop_smtp()
    run.struck()
    run.injected = True
    down = 6 if quick else 20
    log(f"SMTP sink down for {down}s")
    time.sleep(down)
    run.start_smtp()
    log("SMTP sink up")
    run.fault_cleared = time.time()


def scenario_big(run: Run, quick: bool) -> None:
    """A backlog of maximum-size messages waits in ebox.intake; then intake starts, at the
    default prefetch."""
    run.start_workers(["consent-check", "store", "notify"])
    run.start_readers()
    run.publish()
    for publisher in run.publishers:
        publisher.join()
    connection = pika.BlockingConnection(pika.URLParameters(run.amqp_url))
    depth = connection.channel().queue_declare("ebox.intake", passive=True).method.message_count
    connection.close()
    run.notes.append(f"{depth} messages waiting in ebox.intake when intake started")
    run.struck()
    run.injected = True
    run.start_workers(["intake"], wait_ready=False)
    run.fault_cleared = time.time()


def scenario_cluster(run: Run, quick: bool) -> None:
    """Quorum queues with three members on a three-node cluster behind a TCP proxy; the node
    that holds the most queue leaders is killed (SIGKILL) mid-run and stays down."""
    cluster = run.broker
    run.start_workers()
    run.start_readers()
    run.publish()
    run.wait_progress(0.3)
    leaders = cluster.leaders(run.vhost)
    if not leaders:
        raise NotInjected("no quorum queue leader found")
    victim, led = leaders.most_common(1)[0]
    log(f"kill -9 of {victim}, leader of {led} of {sum(leaders.values())} quorum queues")
    run.struck()
    cluster.kill(victim)
    run.injected = True
    run.fault_cleared = time.time()
    run.notes.append(f"killed {victim}, leader of {led} of {sum(leaders.values())} quorum queues; it stays down")
    time.sleep(5)
    after = cluster.leaders(run.vhost)
    run.notes.append("leaders 5 s later: " + ", ".join(f"{node} {count}" for node, count in sorted(after.items())))


# --- the matrix ---------------------------------------------------------------------------


class Context:
    def __init__(self, keep: bool, publish_seconds: float):
        self.keep = keep
        self.publish_seconds = publish_seconds
        self.dir = tempfile.mkdtemp(prefix="ebox-faults-")


def run_scenario(ctx: Context, slug: str, title: str, n: int, scenario, quick: bool,
                 timeout: float, big_bytes: int = 0) -> dict:
    log(f"=== {title} ({n} messages)")
    row = dict(scenario=title, messages=n)
    started = time.time()
    broker = None
    if scenario is scenario_cluster:
        broker = Cluster()
        try:
            log("starting and clustering three RabbitMQ nodes")
            broker.start()
        except Exception as e:
            broker.close()
            row.update(injected=False, notes=[f"HARNESS ERROR: could not start a 3-node cluster: {e}"],
                       seconds=time.time() - started)
            log(f"=== {title}: {summarize(row)}")
            return row
    run = Run(ctx, slug, title, n, big_bytes, broker)
    try:
        run.prepare()
        scenario(run, quick)
        if run.at_fault and min(run.at_fault) >= 1:
            raise NotInjected("the senders had heard every final status before the fault struck")
        recovery = run.converge(timeout)
        if recovery is not None:
            time.sleep(1 if quick else 3)  # late duplicates
        result = run.oracle()
        kib, who = run.peak()
        row.update(result)
        row.update(recovery=recovery, peak_mib=kib / 1024, peak_worker=who, injected=run.injected)
        row["notes"] = []
        if recovery is None:
            row["notes"].append(f"did not settle within {timeout:.0f}s of the fault's end")
        if run.at_fault and slug != "baseline":
            row["notes"].append("struck at " + ", ".join(f"{p:.0%}" for p in run.at_fault)
                                + " of the final statuses heard")
    except NotInjected as e:
        row.update(injected=False, notes=[f"NOT INJECTED: {e}"])
    except Exception as e:  # a harness failure is reported as such, never as a result
        row.update(injected=False, notes=[f"HARNESS ERROR: {type(e).__name__}: {e}"])
    finally:
        try:
            run.teardown()
        except Exception as e:
            row.setdefault("notes", []).append(f"teardown: {e}")
        if broker is not None:
            broker.close()
    for worker in run.workers.values():
        row["notes"] += worker.exits
    row["notes"] += run.notes
    if run.unknown_statuses:
        row["notes"].append(f"{run.unknown_statuses} statuses for unknown references")
    row["seconds"] = time.time() - started
    log(f"=== {title}: {summarize(row)} ({row['seconds']:.0f}s; logs in {run.dir})")
    return row


def summarize(row: dict) -> str:
    if not row.get("injected"):
        return "; ".join(row["notes"])
    text = f"lost {row['lost']}, duplicated {row['duplicated']}, stuck {row['stuck']}, wrong {row['wrong']}"
    for kind, examples in row.get("examples", {}).items():
        text += f"\n      {kind}: " + "; ".join(examples)
    return text


def table(rows: list[dict]) -> str:
    head = ["scenario", "messages", "lost", "duplicated", "stuck", "wrong", "resent", "recovery s", "peak RSS MiB"]
    lines = []
    for row in rows:
        if row.get("injected"):
            recovery = "timeout" if row["recovery"] is None else f"{row['recovery']:.1f}"
            lines.append([row["scenario"], str(row["messages"]), str(row["lost"]), str(row["duplicated"]),
                          str(row["stuck"]), str(row["wrong"]), str(row["resent"]), recovery,
                          f"{row['peak_mib']:.0f} ({row['peak_worker']})"])
        else:
            lines.append([row["scenario"], str(row["messages"]), "-", "-", "-", "-", "-", "-", "-"])
    widths = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(head)]
    fmt = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [fmt(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt(line) for line in lines]
    notes = [(row["scenario"], note) for row in rows for note in row["notes"]]
    if notes:
        out.append("")
        out += [f"- {scenario}: {note}" for scenario, note in notes]
    return "\n".join(out)


# How long a scenario may take to settle after its fault ended: more than the notification
# outbox's two-minute lease.
TIMEOUT = 200


def scenarios(quick: bool, n: int, big: int) -> list[tuple]:
    """(slug, title, messages, function, timeout, big_bytes), in priority order."""
    out = [("baseline", "baseline (no fault)", n, scenario_baseline, TIMEOUT, 0)]
    short = {"driver.handle": "handle", "driver.after-commit": "after-commit", "driver.after-publish": "after-publish"}
    # A notify process that dies leaves the notifications its dispatcher had claimed to wait out
    # their two-minute lease: each row that kills notify takes over two minutes, so the quick
    # run leaves notify to the full one.
    if quick:
        stages = ("intake", "consent-check", "store")
        for failpoint in FAILPOINTS:
            out.append((f"fp-{short[failpoint]}", f"abort at {failpoint}: intake, consent-check, store", n,
                        scenario_failpoint(stages, failpoint), TIMEOUT, 0))
        out.append(("kill9", "kill -9 intake, consent-check, store mid-run", n, scenario_kill9(stages), TIMEOUT, 0))
    else:
        for worker in WORKERS:
            for failpoint in FAILPOINTS:
                out.append((f"fp-{worker}-{short[failpoint]}", f"abort {worker} at {failpoint}", n,
                            scenario_failpoint((worker,), failpoint), TIMEOUT, 0))
        out.append(("kill9", "kill -9 every worker mid-run", n, scenario_kill9(WORKERS), TIMEOUT, 0))
    out += [
        ("broker", "broker stop_app/start_app", n, scenario_broker, TIMEOUT, 0),
        ("postgres", "PostgreSQL connections terminated x3", n, scenario_postgres, TIMEOUT, 0),
        ("sigterm", "SIGTERM every worker mid-batch, restart", n, scenario_sigterm, TIMEOUT, 0),
        ("dup", "duplicate storm (x3)", n, scenario_duplicates, TIMEOUT, 0),
        ("statusq", "status queue of one sender deleted", n, scenario_status_queue, 300, 0),
        ("smtp", "SMTP down then up", n, scenario_smtp, 300, 0),
        ("big", "16 MiB messages at full prefetch", big, scenario_big, 300, 12_580_000),
    ]
    if not quick:
        out.append(("cluster", "3-node cluster, quorum leader node killed", n, scenario_cluster, TIMEOUT, 0))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run for CI (200 messages, fewer rows)")
    parser.add_argument("--messages", type=int, help="messages per scenario (default 2000; 200 with --quick)")
    parser.add_argument("--big", type=int, help="16 MiB messages in that scenario (default 40; 8 with --quick)")
    parser.add_argument("--only", help="run only the scenarios whose slug contains this text (comma-separated)")
    parser.add_argument("--keep", action="store_true", help="keep the databases and the logs")
    parser.add_argument("--table", help="also write the table to this file")
    args = parser.parse_args()
    n = args.messages or (200 if args.quick else 2000)
    big = args.big or (8 if args.quick else 40)
    ctx = Context(args.keep, 5 if args.quick else 10)
    sweep_leftovers()
    for sender in SENDERS:  # each sender's broker user; its password is its name
        mgmt("PUT", f"/users/{sender}", {"password": sender, "tags": ""})
    chosen = scenarios(args.quick, n, big)
    if args.only:
        wanted = args.only.split(",")
        chosen = [s for s in chosen if any(w in s[0] for w in wanted)]
    started = time.time()
    rows = []
    try:
        for slug, title, count, function, timeout, big_bytes in chosen:
            rows.append(run_scenario(ctx, slug, title, count, function, args.quick, timeout, big_bytes))
    finally:
        out = table(rows)
        header = (f"fault matrix, {time.strftime('%Y-%m-%d %H:%M %Z')}, {os.uname().nodename}, "
                  f"{os.cpu_count()} CPUs, {'quick' if args.quick else 'full'} run, "
                  f"{'release' if '/release/' in EBOX else 'debug'} build, {time.time() - started:.0f}s")
        print(header)
        print(out, flush=True)
        if args.table:
            with open(args.table, "w") as f:
                f.write(header + "\n" + out + "\n")
        for sender in SENDERS:
            try:
                mgmt("DELETE", f"/users/{sender}")
            except Exception as e:
                log(f"could not delete broker user {sender}: {e}")
        if not args.keep:
            shutil.rmtree(ctx.dir, ignore_errors=True)
    harness = [r for r in rows if not r.get("injected")]
    defects = [r for r in rows if r.get("injected") and (r["lost"] or r["duplicated"] or r["stuck"] or r["wrong"]
                                                         or r["recovery"] is None)]
    if harness:
        print(f"faults: {len(harness)} scenario(s) could not inject their fault or failed to run")
        return 2
    if defects:
        print(f"faults: {len(defects)} scenario(s) found a defect: {', '.join(r['scenario'] for r in defects)}")
        return 1
    print(f"faults: {len(rows)} scenarios, nothing lost, duplicated or stuck")
    return 0


if __name__ == "__main__":
    sys.exit(main())
