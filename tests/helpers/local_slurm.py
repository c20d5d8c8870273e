"""A one-node SLURM cluster on this machine for the tests: munged, slurmctld and slurmd run as root
with their config, state, sockets and logs in one folder (Debian's slurm-wlm and munge; `make test`
installs them). No accounting: `tools/slurm/sacct` stands in for sacct (first on PATH)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the checkout (this file: tests/helpers/)
DAEMONS = ("munged", "slurmctld", "slurmd")
NODE = "nnlab"

SLURM_CONF = """\
ClusterName=nnlab
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={dir}/munge.sock
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=10
MinJobAge=900
SlurmdParameters=config_overrides
NodeName={node} NodeHostname={host} NodeAddr=127.0.0.1 CPUs=8 State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def missing() -> str | None:
    """Why no cluster can start here, or None."""
    absent = [d for d in DAEMONS if not shutil.which(d, path="/usr/sbin:" + os.environ["PATH"])]
    if absent:
        return f"{', '.join(absent)} not installed (make test installs slurm-wlm and munge)"
    if os.geteuid() != 0:
        return "slurmd runs as root and this is not root"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalSlurm:
    """start() brings the node up (idle), stop() cancels every job and ends the daemons;
    `env` is what a client (sbatch, squeue, submitit) needs."""

    def __init__(self, folder: Path) -> None:
        self.dir = folder
        self.procs: list[subprocess.Popen] = []
        self.env = {**os.environ, "SLURM_CONF": str(folder / "slurm.conf"),
                    "PATH": f"{ROOT / 'tools' / 'slurm'}:/usr/sbin:{os.environ['PATH']}"}

    def _daemon(self, *cmd: str) -> None:
        log = open(self.dir / f"{cmd[0]}.out", "w")  # noqa: SIM115 (kept open while it runs)
        self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                           env=self.env, start_new_session=True))

    def start(self, timeout: float = 60) -> None:
        for sub in ("state", "spool"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        key = self.dir / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o600)
        host = socket.gethostname().split(".")[0]
        (self.dir / "slurm.conf").write_text(SLURM_CONF.format(
            host=host, node=NODE, dir=self.dir, ctld_port=free_port(), d_port=free_port()))
        d = self.dir
        self._daemon("munged", "--foreground", "--force", f"--socket={d}/munge.sock",
                     f"--key-file={key}", f"--pid-file={d}/munged.pid",
                     f"--seed-file={d}/munged.seed", f"--log-file={d}/munged.log")
        self._wait(lambda: (d / "munge.sock").exists(), timeout, "munged")
        self._daemon("slurmctld", "-D", "-i")
        self._daemon("slurmd", "-D", "-N", NODE)
        self._wait(lambda: self.run("sinfo", "-h", "-o", "%T").stdout.strip() == "idle",
                   timeout, "the node to be idle")

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [p.args[0] for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}"
                                 for p in sorted(self.dir.glob("*.out")) + sorted(
                                     self.dir.glob("*.log")))
                self.stop()
                raise RuntimeError(f"local SLURM: waited for {what}; exited: {dead}\n{logs}")
            time.sleep(0.2)

    def run(self, *cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=60)

    def stop(self) -> None:
        if any(p.poll() is None for p in self.procs[1:]):
            self.run("scancel", "--partition=debug")
            deadline = time.monotonic() + 30
            while self.run("squeue", "-h").stdout.strip() and time.monotonic() < deadline:
                time.sleep(0.5)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs = []
