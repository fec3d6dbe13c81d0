"""Flink and Spark standalone clusters on 127.0.0.1, each daemon a separate process, all stopped afterwards.

``flink_cluster`` starts a JobManager and N TaskManagers (one slot each); ``spark_cluster`` a master and N
workers (one core each). With ``worker_pools=True`` each TaskManager / Spark worker also gets its own Beam
EXTERNAL worker pool (``cluster.worker_pool``), reachable from that TaskManager only, under one name: the
pipeline says ``--environment_type=EXTERNAL --environment_config=beam-worker-pool:PORT`` and each JVM resolves
``beam-worker-pool`` through its own hosts file (``-Djdk.net.hosts.file``) to its own loopback address, as a
Kubernetes TaskManager pod reaches its sidecar at ``localhost:50000``.

Every process is started in a new session (its own process group); leaving the ``with`` block, also on an
error, terminates each group, kills what is left after a grace period and checks that nothing survived. A test
may kill one daemon on purpose (``ProcessGroups.kill``, ``FlinkCluster.kill_task_manager``) and start it again
(``restart``, ``start_task_manager``), as a cluster loses a machine and gets it back.
"""
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional

import yaml

__all__ = ["ProcessGroups", "FlinkCluster", "SparkCluster", "flink_cluster", "spark_cluster", "free_port",
           "WORKER_POOL_NAME", "SPARK_DRIVER_JAVA_OPTIONS", "SHORT_LIVED_JVM_OPTIONS"]

WORKER_POOL_NAME = "beam-worker-pool"
START_TIMEOUT_S = 180
STOP_GRACE_S = 20
_POOL_ADDRESS = "127.0.0.{}"  # pool i listens on 127.0.0.(11 + i)
# What Spark's own launcher adds for Java 17 (org.apache.spark.launcher.JavaModuleOptions); the job server is
# the Spark driver but is started as `java -jar`, so these go on its command line (--job_server_jvm_property).
SPARK_DRIVER_JAVA_OPTIONS = ["-XX:+IgnoreUnrecognizedVMOptions"] + [
    f"--add-opens=java.base/{package}=ALL-UNNAMED"
    for package in ("java.lang", "java.lang.invoke", "java.lang.reflect", "java.io", "java.net", "java.nio",
                    "java.util", "java.util.concurrent", "java.util.concurrent.atomic", "sun.nio.ch", "sun.nio.cs",
                    "sun.security.action", "sun.util.calendar")
] + ["--add-opens=java.security.jgss/sun.security.krb5=ALL-UNNAMED", "-Djdk.reflect.useDirectMethodHandle=false"]
# The JVMs of a cluster on one machine that lives for a few jobs (tests, the demo), and the job servers of those
# jobs: only the first JIT tier (C1) and the serial collector. Their work is start-up, RPC and moving Beam's
# elements between the SDK workers, which do the computing; C2 compilation and G1's threads cost them CPU that the
# SDK workers beside them need. Measured in docs/performance.md ("The test suite").
SHORT_LIVED_JVM_OPTIONS = ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
PoolEnv = Callable[[int], Mapping[str, str]]  # pool index -> extra environment of that pool


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


class ProcessGroups:
    """Processes started in their own process groups, stopped together (``stop``), each group entirely."""

    def __init__(self, log_dir: Path):
        self._log_dir = log_dir
        self._processes: List[subprocess.Popen] = []
        self._commands: Dict[str, tuple] = {}  # name -> (command, env), for restart

    def start(self, name: str, command: List[str], env: Mapping[str, str]) -> subprocess.Popen:
        """Starts ``command`` (an argument list) with output to ``<log_dir>/<name>.log``."""
        self._log_dir.mkdir(parents=True, exist_ok=True)
        with open(self._log_dir / f"{name}.log", "ab") as log:
            process = subprocess.Popen(command, env=dict(env), stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True)
        process.mimamo_name = name
        self._processes.append(process)
        self._commands[name] = (list(command), dict(env))
        return process

    def _current(self, name: str) -> subprocess.Popen:
        return [process for process in self._processes if process.mimamo_name == name][-1]

    def kill(self, name: str) -> None:
        """SIGKILL to the whole process group of the process ``name`` (a machine lost at once); returns when
        every member is gone.

        Raises:
            RuntimeError: a member survived.
        """
        process = self._current(name)
        _signal_group(process.pid, signal.SIGKILL)
        process.wait()
        deadline = time.monotonic() + STOP_GRACE_S
        while _group_alive(process.pid):
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes of {name} survived SIGKILL")
            time.sleep(0.1)
        self._processes.remove(process)  # gone for good: neither running nor to be stopped

    def restart(self, name: str) -> subprocess.Popen:
        """Starts the process ``name`` again, with the command and environment it was first started with."""
        command, env = self._commands[name]
        return self.start(name, command, env)

    def check_running(self) -> None:
        """Raises ``RuntimeError`` naming a process that has exited."""
        for process in self._processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.mimamo_name} exited with {process.returncode}; see "
                                   f"{self._log_dir / process.mimamo_name}.log")

    def stop(self) -> None:
        """SIGTERM to every group, SIGKILL to what is left after ``STOP_GRACE_S``; checks every group is gone.

        Raises:
            RuntimeError: a process group still has members after SIGKILL.
        """
        for process in reversed(self._processes):
            _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for process in self._processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
        while time.monotonic() < deadline and any(_group_alive(p.pid) for p in self._processes):
            time.sleep(0.2)
        for process in self._processes:
            _signal_group(process.pid, signal.SIGKILL)
            process.wait()
        time.sleep(0.2)
        survivors = [p.mimamo_name for p in self._processes if _group_alive(p.pid)]
        self._processes.clear()
        if survivors:
            raise RuntimeError(f"processes of {survivors} survived SIGKILL")


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """True while any process (not a zombie) is in process group ``pgid``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                return True
    return False


def _hosts_file(path: Path, pool_address: str) -> Path:
    """A JVM hosts file: this machine's names on 127.0.0.1 and ``WORKER_POOL_NAME`` on ``pool_address``."""
    path.write_text(f"127.0.0.1 localhost {socket.gethostname()}\n{pool_address} {WORKER_POOL_NAME}\n")
    return path


def _wait(what: str, ready, groups: ProcessGroups, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        groups.check_running()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start within {timeout_s:.0f} s")
        time.sleep(0.5)


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=5) as response:  # a 127.0.0.1 URL the cluster serves
        return json.load(response)


def _start_worker_pools(groups: ProcessGroups, count: int, port: int, pool_env: Optional[PoolEnv]) -> List[str]:
    """``count`` worker pools on 127.0.0.11.. at ``port``; returns their addresses."""
    addresses = []
    for index in range(count):
        host = _POOL_ADDRESS.format(11 + index)
        env = _pool_environment(pool_env(index) if pool_env else None)
        env["MIMAMO_WORKER_POOL"] = f"pool-{index}"
        groups.start(f"worker-pool-{index}", [sys.executable, "-m", "cluster.worker_pool", "--host", host,
                                              "--port", str(port)], env)
        addresses.append(host)
    for host in addresses:
        _wait(f"the worker pool on {host}:{port}", lambda host=host: _listening(host, port), groups)
    return addresses


def _pool_environment(env: Optional[Mapping[str, str]]) -> Dict[str, str]:
    """The pools' environment: ``env`` over this one, with this interpreter first on PATH (for ``python -c``)."""
    merged = dict(os.environ, **(env or {}))
    merged["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), merged.get("PATH", "")])
    checkout = str(Path(__file__).resolve().parent.parent)
    merged["PYTHONPATH"] = os.pathsep.join(filter(None, [checkout, merged.get("PYTHONPATH")]))
    return merged


@dataclass
class FlinkCluster:
    """A running Flink cluster: ``flink_master`` (host:port of the REST endpoint) and where its logs are."""

    flink_master: str
    rest_url: str
    log_dir: Path
    task_managers: int
    worker_pool_port: Optional[int] = None
    worker_pool_hosts: List[str] = field(default_factory=list)
    groups: Optional[ProcessGroups] = None

    @property
    def environment_config(self) -> str:
        """The ``--environment_config`` of the EXTERNAL worker pools (one per TaskManager)."""
        return f"{WORKER_POOL_NAME}:{self.worker_pool_port}"

    def overview(self) -> dict:
        """The REST ``/overview`` (``taskmanagers``, ``slots-total``, ``jobs-finished``...)."""
        return _get_json(f"{self.rest_url}/overview")

    def jobs(self) -> Dict[str, str]:
        """Every job the cluster knows: id -> status (``RUNNING``, ``FAILED``, ``CANCELED``, ``FINISHED``...)."""
        return {job["id"]: job["status"] for job in _get_json(f"{self.rest_url}/jobs")["jobs"]}

    def kill_task_manager(self, index: int) -> None:
        """SIGKILL to TaskManager ``index`` (its JVM and start script); its worker pool stays."""
        self.groups.kill(f"taskmanager-{index}")

    def start_task_manager(self, index: int, timeout_s: float = START_TIMEOUT_S) -> None:
        """Starts TaskManager ``index`` again and waits until every TaskManager is registered."""
        self.groups.restart(f"taskmanager-{index}")

        def ready() -> bool:
            with contextlib.suppress(OSError, ValueError):
                overview = self.overview()
                return overview["taskmanagers"] == self.task_managers and \
                    overview["slots-available"] == self.task_managers
            return False

        _wait(f"TaskManager {index}", ready, self.groups, timeout_s)

    def cancel_job(self, job_id: str, timeout_s: float = START_TIMEOUT_S) -> str:
        """Cancels a job (as ``flink cancel`` does) and waits until it has stopped; returns its final status."""
        request = urllib.request.Request(f"{self.rest_url}/jobs/{job_id}?mode=cancel", method="PATCH")
        with urllib.request.urlopen(request, timeout=10):  # a 127.0.0.1 URL the cluster serves
            pass
        deadline = time.monotonic() + timeout_s
        while self.jobs().get(job_id) not in ("CANCELED", "FAILED", "FINISHED"):
            if time.monotonic() > deadline:
                raise RuntimeError(f"job {job_id} did not stop within {timeout_s:.0f} s")
            time.sleep(0.5)
        return self.jobs()[job_id]


def _flink_config(flink_home: Path, rest_port: int, rpc_port: int, java_opts: str, resource_id: str,
                  working_dir: Path, beam_on_class_path: bool) -> dict:
    shipped = yaml.safe_load((flink_home / "conf" / "config.yaml").read_text())
    return {
        # the job's classes from the daemon's own class path where it has them (Beam's, see flink_cluster)
        **({"classloader.resolve-order": "parent-first"} if beam_on_class_path else {}),
        "env.java.opts.all": " ".join([shipped["env"]["java"]["opts"]["all"], *SHORT_LIVED_JVM_OPTIONS,
                                       java_opts]).strip(),
        "jobmanager.rpc.address": "127.0.0.1", "jobmanager.rpc.port": rpc_port,
        "jobmanager.bind-host": "127.0.0.1", "jobmanager.memory.process.size": "1024m",
        "rest.address": "127.0.0.1", "rest.bind-address": "127.0.0.1", "rest.port": rest_port,
        "taskmanager.bind-host": "127.0.0.1", "taskmanager.host": "127.0.0.1",
        "taskmanager.numberOfTaskSlots": 1, "taskmanager.memory.process.size": "1536m",
        # a Beam batch job runs all its stages in the one slot at once: network buffers for each of them
        # (Flink's default 10% gave 2662 buffers, too few); Beam does not use Flink's managed memory
        "taskmanager.memory.network.min": "320m", "taskmanager.memory.network.max": "320m",
        "taskmanager.memory.managed.fraction": 0.05,
        "taskmanager.resource-id": resource_id, "parallelism.default": 1,
        "blob.server.port": "0", "taskmanager.rpc.port": "0", "taskmanager.data.port": 0,
        # each daemon's working directory (<dir>/tm_<resource-id>: blob cache, tmp) is this cluster's own: under the
        # default /tmp every cluster on the machine would share /tmp/tm_taskmanager-0, and a TaskManager empties
        # its tmp/ when it starts
        "process.working-dir": str(working_dir),
    }


def _flink_conf_dir(flink_home: Path, directory: Path, config: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("log4j-console.properties", "logback-console.xml"):
        shutil.copy(flink_home / "conf" / name, directory / name)
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    return directory


@contextlib.contextmanager
def flink_cluster(flink_home: Path, workdir: Path, task_managers: int = 2, worker_pools: bool = False,
                  pool_env: Optional[PoolEnv] = None, beam_jar: Optional[Path] = None) -> Iterator[FlinkCluster]:
    """A Flink standalone session cluster on 127.0.0.1, stopped (every process) when the block ends.

    With ``beam_jar`` (Beam's Flink job-server jar, the one the jobs are submitted with) every daemon has Beam's
    runner on its own class path, after Flink's jars (so Flink's classes stay the distribution's; the jar bundles
    a copy), and loads a job's classes from there first. Beam's Flink runner keeps a job's SDK environments
    between stages (``--environment_cache_millis``) only when its classes come from that class path: with them in
    the job's jar alone, each TaskManager starts a fresh SDK process for each scheduling region of the job.

    Args:
        flink_home: a Flink distribution (``cluster.prepare``).
        workdir: where its configuration and logs go.
        task_managers: how many TaskManagers (one slot each).
        worker_pools: also start one EXTERNAL worker pool per TaskManager.
        pool_env: pool index -> extra environment of that worker pool (and so of its SDK worker processes).
        beam_jar: Beam's Flink job-server jar, put on every daemon's class path (see above).
    """
    groups = ProcessGroups(workdir / "log")
    rest_port, rpc_port = free_port(), free_port()
    working_dir = workdir / "working-dirs"
    # the pid files too (Flink's scripts keep them in /tmp and name the log files by their line count)
    env = dict(os.environ, FLINK_HOME=str(flink_home), FLINK_LOG_DIR=str(workdir / "log"),
               FLINK_PID_DIR=str(workdir / "pids"))
    beam_on_class_path = beam_jar is not None
    if beam_on_class_path:
        # Flink's scripts put HADOOP_CLASSPATH after Flink's own jars
        env["HADOOP_CLASSPATH"] = os.pathsep.join(filter(None, [env.get("HADOOP_CLASSPATH"), str(beam_jar)]))
    try:
        pool_port = free_port() if worker_pools else None
        hosts = _start_worker_pools(groups, task_managers, pool_port, pool_env) \
            if worker_pools else []
        jm_conf = _flink_conf_dir(flink_home, workdir / "conf-jobmanager",
                                  _flink_config(flink_home, rest_port, rpc_port, "", "jobmanager", working_dir,
                                                 beam_on_class_path))
        groups.start("jobmanager", [str(flink_home / "bin" / "jobmanager.sh"), "start-foreground"],
                     dict(env, FLINK_CONF_DIR=str(jm_conf)))
        for index in range(task_managers):
            java_opts = ""
            if worker_pools:
                hosts_file = _hosts_file(workdir / f"hosts-taskmanager-{index}", hosts[index])
                java_opts = f"-Djdk.net.hosts.file={hosts_file}"
            conf = _flink_conf_dir(flink_home, workdir / f"conf-taskmanager-{index}",
                                   _flink_config(flink_home, rest_port, rpc_port, java_opts, f"taskmanager-{index}",
                                                 working_dir, beam_on_class_path))
            groups.start(f"taskmanager-{index}", [str(flink_home / "bin" / "taskmanager.sh"), "start-foreground"],
                         dict(env, FLINK_CONF_DIR=str(conf)))
        cluster = FlinkCluster(f"127.0.0.1:{rest_port}", f"http://127.0.0.1:{rest_port}", workdir / "log",
                               task_managers, pool_port, hosts, groups)

        def ready() -> bool:
            with contextlib.suppress(OSError, ValueError):
                overview = cluster.overview()
                return overview["taskmanagers"] == task_managers and overview["slots-total"] == task_managers
            return False

        _wait("the Flink cluster", ready, groups)
        yield cluster
    finally:
        groups.stop()
        shutil.rmtree(working_dir, ignore_errors=True)  # the job jars' blob copies (150 MB per job), nothing else


@dataclass
class SparkCluster:
    """A running Spark standalone cluster: ``master_url`` (spark://...), its web UI and its logs."""

    master_url: str
    web_url: str
    rest_url: str
    log_dir: Path
    workers: int
    worker_pool_port: Optional[int] = None
    worker_pool_hosts: List[str] = field(default_factory=list)

    @property
    def environment_config(self) -> str:
        """The ``--environment_config`` of the EXTERNAL worker pools (one per worker)."""
        return f"{WORKER_POOL_NAME}:{self.worker_pool_port}"

    def state(self) -> dict:
        """The master's ``/json`` (``aliveworkers``, ``completedapps``...)."""
        return _get_json(f"{self.web_url}/json")


@contextlib.contextmanager
def spark_cluster(spark_home: Path, workdir: Path, workers: int = 2, worker_pools: bool = False,
                  pool_env: Optional[PoolEnv] = None) -> Iterator[SparkCluster]:
    """A Spark standalone master and ``workers`` workers (one core, 2 GiB each) on 127.0.0.1, stopped after.

    Arguments as ``flink_cluster``. Each worker's executors inherit its ``JDK_JAVA_OPTIONS`` (its hosts file).
    """
    groups = ProcessGroups(workdir / "log")
    port, web_port, rest_port = free_port(), free_port(), free_port()
    env = dict(os.environ, SPARK_HOME=str(spark_home), SPARK_LOCAL_IP="127.0.0.1",
               SPARK_LOG_DIR=str(workdir / "log"), SPARK_NO_DAEMONIZE="1",
               JDK_JAVA_OPTIONS=" ".join(SHORT_LIVED_JVM_OPTIONS))
    spark_class = str(spark_home / "bin" / "spark-class")
    try:
        pool_port = free_port() if worker_pools else None
        hosts = _start_worker_pools(groups, workers, pool_port, pool_env) if worker_pools else []
        groups.start("spark-master", [spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                      "--port", str(port), "--webui-port", str(web_port)],
                     dict(env, SPARK_MASTER_OPTS=f"-Dspark.master.rest.enabled=true "
                                                 f"-Dspark.master.rest.port={rest_port}"))
        master_url = f"spark://127.0.0.1:{port}"
        cluster = SparkCluster(master_url, f"http://127.0.0.1:{web_port}", f"http://127.0.0.1:{rest_port}",
                               workdir / "log", workers, pool_port, hosts)
        _wait("the Spark master", lambda: _listening("127.0.0.1", port), groups)
        for index in range(workers):
            worker_env = dict(env, SPARK_WORKER_DIR=str(workdir / f"worker-{index}"))
            if worker_pools:
                hosts_file = _hosts_file(workdir / f"hosts-worker-{index}", hosts[index])
                worker_env["JDK_JAVA_OPTIONS"] += f" -Djdk.net.hosts.file={hosts_file}"
            groups.start(f"spark-worker-{index}", [spark_class, "org.apache.spark.deploy.worker.Worker",
                                                   "--host", "127.0.0.1", "--cores", "1", "--memory", "2g",
                                                   "--webui-port", str(free_port()), master_url], worker_env)

        def ready() -> bool:
            with contextlib.suppress(OSError, ValueError):
                return cluster.state()["aliveworkers"] == workers
            return False

        _wait("the Spark cluster", ready, groups)
        yield cluster
    finally:
        groups.stop()
