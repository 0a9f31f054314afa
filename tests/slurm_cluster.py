"""A throw-away single-node SLURM cluster on localhost, for tests.

``LocalSlurmCluster`` writes a slurm.conf into a private temporary directory, starts its own ``munged`` (own key,
own socket), ``slurmctld`` and ``slurmd`` in the foreground as child processes, and waits until ``sinfo`` shows the
node idle. Nothing system-wide is touched: no /etc/slurm, no /etc/munge, no systemd, ports chosen free. Client
commands (sbatch, squeue, ...) find the cluster through the ``SLURM_CONF`` variable in :attr:`env`.

The configuration is the smallest that runs Snakemake's SLURM executor:

* one partition holding this host with the CPU count and memory ``slurmd -C`` reports;
* ``select/cons_tres`` with ``CR_Core_Memory`` (jobs are packed by cores and memory, as on a real cluster);
* ``proctrack/linuxproc`` and ``task/none``: no cgroups, which often cannot be used inside containers;
* ``accounting_storage/none``: no slurmdbd/MariaDB. ``sacct`` then answers "Slurm accounting storage is
  disabled", so the executor must poll job states with ``squeue`` (``--slurm-status-command squeue``) and
  finished jobs must stay visible to squeue long enough: ``MinJobAge=600`` (the plugin checks that
  MinJobAge >= 3 x its first polling interval before it trusts squeue).

snakemake-executor-plugin-slurm-jobstep 0.6.x runs each job through a nested ``srun`` with every ``SLURM_*``
variable removed from its environment, ``SLURM_CONF`` included, so inside a job ``srun`` would look for
/etc/slurm/slurm.conf (absent: this cluster's config is private) and then for DNS SRV records. On a real
cluster the config is at the default path or served by slurmd ("configless"); here :attr:`env` puts a directory
first on ``PATH`` whose ``srun`` sets ``SLURM_CONF`` back and then runs the real ``srun`` (``sbatch --export=ALL``
carries ``PATH`` into the job).

Daemons need root (slurmd starts jobs as the submitting user). :func:`unavailable_reason` says why a cluster
cannot be started here, for ``pytest.skip``; :meth:`LocalSlurmCluster.start` raises :class:`SlurmUnavailable`
when a daemon fails to start.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

REQUIRED_BINARIES = ("munged", "munge", "slurmctld", "slurmd", "sbatch", "srun", "squeue", "sinfo", "scancel",
                     "scontrol")
APT_PACKAGES = "slurm-wlm munge"


class SlurmUnavailable(RuntimeError):
    """The local cluster could not be started; the message says why (and where the daemon logs are)."""


def unavailable_reason() -> str | None:
    """Why a local cluster cannot run on this machine, or None when it can be tried."""
    missing = [name for name in REQUIRED_BINARIES if shutil.which(name) is None]
    if missing:
        return f"SLURM/munge binaries not installed ({', '.join(missing)}); apt-get install {APT_PACKAGES}"
    if os.geteuid() != 0:
        return "a local SLURM cluster needs root (slurmd launches jobs as the submitting user)"
    return None


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM when the test process dies (even by SIGKILL), so a killed test
    run cannot leave daemons behind."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node_hardware(timeout: float = 30) -> dict[str, str]:
    """CPU topology and memory of this host as slurmd sees it (``slurmd -C``), so the node config matches."""
    try:
        out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, timeout=timeout, check=True).stdout
        first = out.splitlines()[0]
        fields = dict(item.split("=", 1) for item in first.split() if "=" in item)
        fields.pop("NodeName", None)
        if "CPUs" in fields and "RealMemory" in fields:
            return fields
    except (subprocess.SubprocessError, OSError, IndexError, ValueError):
        pass
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        mem_kb = next(int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:"))
    return {"CPUs": str(os.cpu_count() or 1), "RealMemory": str(mem_kb // 1024)}


class LocalSlurmCluster:
    """munged + slurmctld + slurmd on localhost; use as a context manager (always stops its daemons)."""

    def __init__(self, name: str = "astrorimci", partition: str = "cpu", min_job_age: int = 600,
                 start_timeout: float = 60):
        self.name = name
        self.partition = partition
        self.min_job_age = min_job_age
        self.start_timeout = start_timeout
        # Short path: the munge socket path must fit in sun_path (108 bytes); munged also requires every
        # directory above its socket to be searchable by all.
        self.root = Path(tempfile.mkdtemp(prefix="astrorim-slurm-"))
        self.root.chmod(0o755)
        self.node = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge.socket"
        self.log_dir = self.root / "log"
        self._procs: dict[str, subprocess.Popen] = {}
        self.shim_dir = self.root / "bin"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf),
                        PATH=f"{self.shim_dir}{os.pathsep}{os.environ.get('PATH', os.defpath)}")
        for var in [v for v in self.env if v.startswith(("SLURM_", "SBATCH_", "SRUN_", "SQUEUE_"))]:
            if var != "SLURM_CONF":
                del self.env[var]

    # -- configuration -------------------------------------------------------------------------------------

    def write_config(self) -> None:
        hw = _node_hardware()
        node_fields = " ".join(f"{k}={v}" for k, v in hw.items())
        self.hardware = hw
        for sub in ("state", "spool", "log"):
            (self.root / sub).mkdir(exist_ok=True)
        r = self.root
        ctld_port = _free_port()
        slurmd_port = _free_port()
        while slurmd_port == ctld_port:
            slurmd_port = _free_port()
        self.conf.write_text(f"""\
# Generated by tests/slurm_cluster.py: a private single-node cluster for tests.
ClusterName={self.name}
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge={self.min_job_age}
InactiveLimit=0
KillWait=5
SlurmdTimeout=120
SlurmctldTimeout=120
NodeName={self.node} NodeAddr=127.0.0.1 {node_fields} State=UNKNOWN
PartitionName={self.partition} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
""")
        self.shim_dir.mkdir(exist_ok=True)
        shim = self.shim_dir / "srun"
        shim.write_text(f'#!/bin/sh\n# the jobstep plugin drops SLURM_CONF; restore it for the real srun\n'
                        f'SLURM_CONF={self.conf}\nexport SLURM_CONF\nexec {shutil.which("srun")} "$@"\n')
        shim.chmod(0o755)
        key = self.root / "munge.key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(1024))

    # -- daemons -----------------------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> None:
        out = open(self.log_dir / f"{name}.out", "wb")
        try:
            self._procs[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                                 env=self.env, cwd=self.root, start_new_session=True,
                                                 preexec_fn=_die_with_parent)
        finally:
            out.close()

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise SlurmUnavailable(f"{name} exited with status {proc.returncode}:\n{self.tail_logs()}")

    def _wait_for(self, what: str, predicate, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            if predicate():
                return
            time.sleep(0.5)
        raise SlurmUnavailable(f"timed out after {timeout:.0f} s waiting for {what}:\n{self.tail_logs()}")

    def run(self, *argv: str, timeout: float = 30, check: bool = False) -> subprocess.CompletedProcess:
        """Run a SLURM client command against this cluster."""
        return subprocess.run(list(argv), capture_output=True, text=True, env=self.env, timeout=timeout,
                              check=check)

    def _munge_works(self) -> bool:
        try:
            cred = subprocess.run(["munge", "-n", f"--socket={self.munge_socket}"], capture_output=True,
                                  timeout=10)
            if cred.returncode != 0:
                return False
            back = subprocess.run(["unmunge", f"--socket={self.munge_socket}"], input=cred.stdout,
                                  capture_output=True, timeout=10)
            return back.returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def node_state(self) -> str:
        try:
            out = self.run("sinfo", "-h", "-N", "-n", self.node, "-o", "%t", timeout=10)
        except subprocess.TimeoutExpired:
            return ""
        return out.stdout.strip() if out.returncode == 0 else ""

    def start(self) -> "LocalSlurmCluster":
        reason = unavailable_reason()
        if reason:
            raise SlurmUnavailable(reason)
        self.log_dir.mkdir(exist_ok=True)
        self.write_config()
        r = self.root
        self._spawn("munged", ["munged", "--foreground", f"--socket={self.munge_socket}",
                               f"--key-file={r}/munge.key", f"--pid-file={r}/munged.pid",
                               f"--log-file={r}/log/munged.log", f"--seed-file={r}/munged.seed"])
        self._wait_for("munged to answer", self._munge_works, 20)
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
        self._wait_for("slurmctld to answer", lambda: self.run("scontrol", "ping", timeout=10).returncode == 0,
                       self.start_timeout)
        self._spawn("slurmd", ["slurmd", "-D", "-N", self.node, "-f", str(self.conf)])
        self._wait_for(f"node {self.node} to be idle", lambda: self.node_state() == "idle", self.start_timeout)
        return self

    def stop(self) -> None:
        """Cancel every job, stop the daemons (TERM, then KILL), remove the temporary directory."""
        if "slurmctld" in self._procs and self._procs["slurmctld"].poll() is None:
            try:
                self.run("scancel", "--full", f"--partition={self.partition}", timeout=15)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    q = self.run("squeue", "-h", "-t", "PENDING,RUNNING,COMPLETING,CONFIGURING,SUSPENDED",
                                 "-o", "%i", timeout=10)
                    if q.returncode != 0 or not q.stdout.strip():
                        break
                    time.sleep(1)
            except subprocess.SubprocessError:
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self._procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self._procs.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def tail_logs(self, lines: int = 30) -> str:
        chunks = []
        for path in sorted(self.log_dir.glob("*")):
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            chunks.append(f"--- {path.name} ---\n" + "\n".join(text))
        return "\n".join(chunks)

    def __enter__(self) -> "LocalSlurmCluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
